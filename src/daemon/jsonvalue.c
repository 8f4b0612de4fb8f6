/* A value typed on the command line, as the JSON the admin API takes: the
 * CLI's `--override tier=20000/min` or `--override smooth={rate: 900/min,
 * burst: 15}` is written the way the same value is written in the YAML
 * config, so it is parsed as YAML (flow style) and turned into JSON: a
 * plain scalar that is an integer becomes a number, true/false a boolean,
 * an empty value or null/~ null, anything else (quoted or not) a string;
 * maps and sequences nest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include "daemon/jsonvalue.h"

#define DEPTH_MAX 16

static cJSON *scalar(const yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;
	size_t len = n->data.scalar.length;
	char *end;
	long long v;

	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return cJSON_CreateString(s);
	if (len == 0 || strcmp(s, "null") == 0 || strcmp(s, "~") == 0)
		return cJSON_CreateNull();
	if (strcmp(s, "true") == 0)
		return cJSON_CreateTrue();
	if (strcmp(s, "false") == 0)
		return cJSON_CreateFalse();
	if ((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && len > 1)) {
		errno = 0;
		v = strtoll(s, &end, 10);
		/* a double holds integers exactly up to 2^53 */
		if (errno == 0 && *end == '\0' && v < (1LL << 53) && v > -(1LL << 53))
			return cJSON_CreateNumber((double)v);
	}
	return cJSON_CreateString(s);
}

static cJSON *convert(yaml_document_t *doc, const yaml_node_t *n, int depth)
{
	cJSON *out = NULL;

	if (n == NULL || depth > DEPTH_MAX)
		return NULL;
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return scalar(n);
	case YAML_SEQUENCE_NODE:
		out = cJSON_CreateArray();
		for (yaml_node_item_t *i = n->data.sequence.items.start;
		     out != NULL && i < n->data.sequence.items.top; i++) {
			cJSON *e = convert(doc, yaml_document_get_node(doc, *i), depth + 1);

			if (e == NULL) {
				cJSON_Delete(out);
				return NULL;
			}
			cJSON_AddItemToArray(out, e);
		}
		return out;
	case YAML_MAPPING_NODE:
		out = cJSON_CreateObject();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     out != NULL && p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			cJSON *e;

			if (k == NULL || k->type != YAML_SCALAR_NODE) {
				cJSON_Delete(out);
				return NULL;
			}
			e = convert(doc, yaml_document_get_node(doc, p->value), depth + 1);
			if (e == NULL) {
				cJSON_Delete(out);
				return NULL;
			}
			cJSON_AddItemToObject(out, (const char *)k->data.scalar.value, e);
		}
		return out;
	default:
		return NULL;
	}
}

cJSON *sl_cli_value(const char *text)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	cJSON *out = NULL;

	if (text[0] == '\0')
		return cJSON_CreateNull();
	if (!yaml_parser_initialize(&parser))
		return NULL;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_parser_delete(&parser);
		return NULL;
	}
	root = yaml_document_get_root_node(&doc);
	out = root ? convert(&doc, root, 0) : cJSON_CreateNull();
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return out;
}
