/* `sluice accounts ...` and `sluice keys ...` (DESIGN.md section 6): the
 * account store of a running daemon, driven through its admin API. Every
 * verb is one request (rotate and issue print the new key, the only time
 * it is shown); output is a table for people or, with --json, the API's
 * JSON as it came. Exit status: 0 done, 1 refused or unreachable (the
 * API's error is printed), 2 bad usage. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include "daemon/adminclient.h"
#include "daemon/commands.h"
#include "daemon/jsonvalue.h"

#define MAX_PAIRS 64

struct opts {
	const char *config, *admin;
	bool json, all;
	const char *plan, *title, *status, *label, *expires, *grace, *after, *limit;
	const char *overrides[MAX_PAIRS];
	size_t noverrides;
	const char *meta[MAX_PAIRS];
	size_t nmeta;
	const char *args[4]; /* positional */
	size_t nargs;
};

/* ---- output ---- */

/* A JSON value as table text: strings bare, null as "-", numbers of
 * seconds since the epoch as RFC 3339 when the field is a time. */
static void cell(char *out, size_t cap, const cJSON *v, bool time_field)
{
	if (v == NULL || cJSON_IsNull(v)) {
		snprintf(out, cap, "-");
	} else if (cJSON_IsString(v)) {
		snprintf(out, cap, "%s", v->valuestring);
	} else if (cJSON_IsBool(v)) {
		snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "yes" : "no");
	} else if (cJSON_IsNumber(v) && time_field) {
		time_t t = (time_t)v->valuedouble;
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
	} else if (cJSON_IsNumber(v)) {
		snprintf(out, cap, "%.0f", v->valuedouble);
	} else {
		char *s = cJSON_PrintUnformatted(v);

		snprintf(out, cap, "%s", s ? s : "?");
		free(s);
	}
}

/* Rows of objects as an aligned table of the given fields. */
static void table(const cJSON *rows, const char *const *fields, const char *const *titles,
                  size_t nf)
{
	size_t w[8] = {0}, n = (size_t)cJSON_GetArraySize(rows);
	char buf[256];

	for (size_t f = 0; f < nf; f++)
		w[f] = strlen(titles[f]);
	for (size_t r = 0; r < n; r++)
		for (size_t f = 0; f < nf; f++) {
			const cJSON *o = cJSON_GetArrayItem(rows, (int)r);
			const char *fn = fields[f];
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, fn);
			bool tf = !strcmp(fn, "created") || !strcmp(fn, "expires");

			if (!strcmp(fn, "keys#"))
				snprintf(buf, sizeof(buf), "%d",
				         cJSON_GetArraySize(
				                 cJSON_GetObjectItemCaseSensitive(o, "keys")));
			else
				cell(buf, sizeof(buf), v, tf);
			if (strlen(buf) > w[f])
				w[f] = strlen(buf);
		}
	for (size_t f = 0; f < nf; f++)
		printf("%-*s%s", (int)w[f], titles[f], f + 1 < nf ? "  " : "\n");
	for (size_t r = 0; r < n; r++)
		for (size_t f = 0; f < nf; f++) {
			const cJSON *o = cJSON_GetArrayItem(rows, (int)r);
			const char *fn = fields[f];
			bool tf = !strcmp(fn, "created") || !strcmp(fn, "expires");

			if (!strcmp(fn, "keys#"))
				snprintf(buf, sizeof(buf), "%d",
				         cJSON_GetArraySize(
				                 cJSON_GetObjectItemCaseSensitive(o, "keys")));
			else
				cell(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(o, fn), tf);
			printf("%-*s%s", (int)w[f], buf, f + 1 < nf ? "  " : "\n");
		}
}

static const char *const acct_fields[] = {"account", "plan", "status", "title", "keys#", "created"};
static const char *const acct_titles[] = {"ACCOUNT", "PLAN", "STATUS", "TITLE", "KEYS", "CREATED"};
static const char *const key_fields[] = {"id", "prefix", "label", "created", "expires", "revoked"};
static const char *const key_titles[] = {"ID", "PREFIX", "LABEL", "CREATED", "EXPIRES", "REVOKED"};

static void print_account(const cJSON *a)
{
	static const char *const f[] = {"account", "plan", "title", "status", "created"};
	const cJSON *ov = cJSON_GetObjectItemCaseSensitive(a, "overrides");
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(a, "metadata");
	const cJSON *keys = cJSON_GetObjectItemCaseSensitive(a, "keys");
	const cJSON *e;
	char buf[512];

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		cell(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(a, f[i]),
		     !strcmp(f[i], "created"));
		printf("%-10s %s\n", f[i], buf);
	}
	cJSON_ArrayForEach(e, ov)
	{
		cell(buf, sizeof(buf), e, false);
		printf("override   %s = %s\n", e->string, buf);
	}
	cJSON_ArrayForEach(e, md)
	{
		cell(buf, sizeof(buf), e, false);
		printf("metadata   %s = %s\n", e->string, buf);
	}
	if (cJSON_GetArraySize(keys) > 0) {
		printf("\n");
		table(keys, key_fields, key_titles, 6);
	}
}

/* A key just issued or rotated: the secret, once. */
static void print_new_key(const cJSON *k)
{
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(k, "key");
	char id[128], exp[64];

	cell(id, sizeof(id), cJSON_GetObjectItemCaseSensitive(k, "id"), false);
	cell(exp, sizeof(exp), cJSON_GetObjectItemCaseSensitive(k, "expires"), true);
	printf("%s\n", cJSON_IsString(key) ? key->valuestring : "?");
	fprintf(stderr,
	        "key %s (expires %s): the key above is shown this once; sluice keeps only its "
	        "SHA-256\n",
	        id, exp);
}

/* ---- requests ---- */

/* s percent-encoded as one path segment into out. */
static void seg(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s && n + 4 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = '\0';
}

/* One call; on a 2xx *json holds the parsed body (NULL for 204). Returns
 * 0, or 1 after printing why. */
static int call(const char *cmd, const struct opts *o, const char *method, const char *path,
                cJSON *body, cJSON **json, bool raw_json)
{
	struct sl_admin_target t;
	struct sl_admin_reply r;
	char err[512], *text = body ? cJSON_PrintUnformatted(body) : NULL;
	int rc;

	*json = NULL;
	if (sl_admin_target_init(&t, o->config, o->admin, err, sizeof(err)) != 0 ||
	    sl_admin_request(&t, method, path, text, &r, err, sizeof(err)) != 0) {
		free(text);
		fprintf(stderr, "sluice %s: %s\n", cmd, err);
		return 1;
	}
	free(text);
	if (r.status < 200 || r.status > 299) {
		cJSON *e = cJSON_Parse(r.body);
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "error");
		const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");

		if (raw_json && r.len > 0)
			printf("%s\n", r.body);
		fprintf(stderr, "sluice %s: %d %s%s%s\n", cmd, r.status,
		        cJSON_IsString(code) ? code->valuestring : "error",
		        cJSON_IsString(msg) ? ": " : "",
		        cJSON_IsString(msg) ? msg->valuestring : "");
		cJSON_Delete(e);
		free(r.body);
		return 1;
	}
	rc = 0;
	if (r.len > 0) {
		*json = cJSON_Parse(r.body);
		if (*json == NULL) {
			fprintf(stderr, "sluice %s: the answer is not JSON\n", cmd);
			rc = 1;
		} else if (raw_json) {
			printf("%s\n", r.body);
		}
	}
	free(r.body);
	return rc;
}

/* NAME=VALUE pairs into obj (VALUE as YAML: see jsonvalue.c; for metadata
 * always a string). Returns 0 or 2 (usage). */
static int pairs(const char *cmd, void (*usage)(FILE *), cJSON *obj, const char *const *kv,
                 size_t n, bool typed)
{
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(kv[i], '=');
		char name[256];
		cJSON *v;

		if (eq == NULL || eq == kv[i] || (size_t)(eq - kv[i]) >= sizeof(name))
			return sl_usage_error(usage, cmd, "expected NAME=VALUE, got '%s'", kv[i]);
		memcpy(name, kv[i], (size_t)(eq - kv[i]));
		name[eq - kv[i]] = '\0';
		v = typed ? sl_cli_value(eq + 1)
		          : (eq[1] ? cJSON_CreateString(eq + 1) : cJSON_CreateNull());
		if (v == NULL)
			return sl_usage_error(usage, cmd, "%s: '%s' is not a value", name, eq + 1);
		cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
		cJSON_AddItemToObject(obj, name, v);
	}
	return 0;
}

/* ---- options ---- */

static int parse(const char *cmd, void (*usage)(FILE *), int argc, char **argv, struct opts *o)
{
	static const struct {
		const char *name;
		size_t off;
	} vals[] = {
#define V(n, f) {n, offsetof(struct opts, f)}
	        V("--plan", plan),     V("--title", title),     V("--status", status),
	        V("--label", label),   V("--expires", expires), V("--grace", grace),
	        V("--after", after),   V("--limit", limit),     V("--admin", admin),
	        V("--config", config), V("-c", config),
#undef V
	};

	memset(o, 0, sizeof(*o));
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		bool done = false;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--json")) {
			o->json = true;
			continue;
		}
		if (!strcmp(a, "--all")) {
			o->all = true;
			continue;
		}
		if (!strcmp(a, "--override") || !strcmp(a, "--meta")) {
			bool ov = a[2] == 'o';

			if (i + 1 >= argc)
				return sl_usage_error(usage, cmd, "option %s needs NAME=VALUE", a);
			if ((ov ? o->noverrides : o->nmeta) >= MAX_PAIRS)
				return sl_usage_error(usage, cmd, "at most %d %s options",
				                      MAX_PAIRS, a);
			if (ov)
				o->overrides[o->noverrides++] = argv[++i];
			else
				o->meta[o->nmeta++] = argv[++i];
			continue;
		}
		for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
			size_t n = strlen(vals[v].name);

			if (!strcmp(a, vals[v].name)) {
				if (i + 1 >= argc)
					return sl_usage_error(usage, cmd, "option %s needs a value",
					                      a);
				*(const char **)((char *)o + vals[v].off) = argv[++i];
				done = true;
			} else if (!strncmp(a, vals[v].name, n) && a[n] == '=' && a[1] == '-') {
				*(const char **)((char *)o + vals[v].off) = a + n + 1;
				done = true;
			}
			if (done)
				break;
		}
		if (done)
			continue;
		if (a[0] == '-' && a[1] != '\0')
			return sl_usage_error(usage, cmd, "unknown option '%s'", a);
		if (o->nargs >= sizeof(o->args) / sizeof(o->args[0]))
			return sl_usage_error(usage, cmd, "unexpected argument '%s'", a);
		o->args[o->nargs++] = a;
	}
	if (o->config == NULL && o->admin == NULL)
		return sl_usage_error(usage, cmd, "%s",
		                      "name the daemon: -c FILE (its config) or --admin URL");
	return -1; /* go on */
}

/* ---- sluice accounts ---- */

static int need(const char *cmd, void (*usage)(FILE *), const struct opts *o, size_t n,
                const char *what)
{
	if (o->nargs != n)
		return sl_usage_error(usage, cmd, "%s", what);
	return 0;
}

static int accounts_list(const struct opts *o)
{
	char path[2048], plan[256] = "", after[768] = "", raw[512];
	cJSON *all = cJSON_CreateArray(), *j = NULL;
	const char *cursor = o->after;
	int rc = 0;

	if (o->plan)
		seg(plan, sizeof(plan), o->plan);
	do {
		cJSON *page, *next, *e;

		if (cursor)
			seg(after, sizeof(after), cursor);
		snprintf(path, sizeof(path), "/v1/accounts?%s%s%s%s%s%s", o->plan ? "plan=" : "",
		         o->plan ? plan : "", cursor ? "&after=" : "", cursor ? after : "",
		         o->limit ? "&limit=" : "", o->limit ? o->limit : "");
		cJSON_Delete(j);
		rc = call("accounts list", o, "GET", path, NULL, &j, o->json && !o->all);
		if (rc != 0 || j == NULL)
			break;
		page = cJSON_GetObjectItemCaseSensitive(j, "accounts");
		while ((e = cJSON_DetachItemFromArray(page, 0)) != NULL)
			cJSON_AddItemToArray(all, e);
		next = cJSON_GetObjectItemCaseSensitive(j, "next");
		cursor = NULL;
		if (o->all && cJSON_IsString(next)) {
			snprintf(raw, sizeof(raw), "%s", next->valuestring);
			cursor = raw;
		}
	} while (cursor != NULL);
	if (rc == 0 && j != NULL) {
		if (o->json && o->all) {
			char *s;
			cJSON *out = cJSON_CreateObject();

			cJSON_AddItemToObject(out, "accounts", all);
			all = NULL;
			cJSON_AddNullToObject(out, "next");
			s = cJSON_PrintUnformatted(out);
			printf("%s\n", s);
			free(s);
			cJSON_Delete(out);
		} else if (!o->json) {
			const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "next");

			table(all, acct_fields, acct_titles, 6);
			if (cJSON_IsString(next))
				fprintf(stderr, "more: --after %s (or --all)\n", next->valuestring);
		}
	}
	cJSON_Delete(all);
	cJSON_Delete(j);
	return rc;
}

/* The verb of `sluice GROUP VERB ...` into *verb and "GROUP VERB" into cmd:
 * -1 to go on, else the exit status (help asked for, or no verb). */
static int verb_of(const char *group, void (*u)(FILE *), int argc, char **argv, char *cmd,
                   size_t cap, const char **verb)
{
	*verb = argc >= 2 ? argv[1] : NULL;
	if (*verb == NULL)
		return sl_usage_error(u, group, "%s", "a verb is required");
	if (!strcmp(*verb, "-h") || !strcmp(*verb, "--help")) {
		u(stdout);
		return 0;
	}
	snprintf(cmd, cap, "%s %s", group, *verb);
	return -1;
}

int sl_cmd_accounts(int argc, char **argv)
{
	const char *verb;
	void (*u)(FILE *) = sl_usage_accounts;
	char cmd[64], path[1024], name[768];
	struct opts o;
	cJSON *body = NULL, *j = NULL;
	int rc = verb_of("accounts", u, argc, argv, cmd, sizeof(cmd), &verb);

	if (rc >= 0)
		return rc;
	rc = parse(cmd, u, argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (!strcmp(verb, "list")) {
		if ((rc = need(cmd, u, &o, 0, "list takes no ACCOUNT")) != 0)
			return rc;
		return accounts_list(&o);
	}
	if (strcmp(verb, "add") && strcmp(verb, "show") && strcmp(verb, "set") &&
	    strcmp(verb, "suspend") && strcmp(verb, "resume") && strcmp(verb, "delete"))
		return sl_usage_error(u, "accounts", "unknown verb '%s'", verb);
	if ((rc = need(cmd, u, &o, 1, "one ACCOUNT is required")) != 0)
		return rc;
	seg(name, sizeof(name), o.args[0]);
	snprintf(path, sizeof(path), "/v1/accounts/%s", name);
	if (!strcmp(verb, "show")) {
		rc = call(cmd, &o, "GET", path, NULL, &j, o.json);
	} else if (!strcmp(verb, "delete")) {
		rc = call(cmd, &o, "DELETE", path, NULL, &j, o.json);
		if (rc == 0 && !o.json)
			printf("deleted %s\n", o.args[0]);
	} else {
		bool add = !strcmp(verb, "add");
		cJSON *ov = cJSON_CreateObject(), *md = cJSON_CreateObject();

		body = cJSON_CreateObject();
		if (add)
			cJSON_AddStringToObject(body, "account", o.args[0]);
		if (add && o.plan == NULL) {
			cJSON_Delete(ov);
			cJSON_Delete(md);
			cJSON_Delete(body);
			return sl_usage_error(u, cmd, "%s", "--plan PLAN is required");
		}
		if (o.plan)
			cJSON_AddStringToObject(body, "plan", o.plan);
		if (o.title)
			cJSON_AddStringToObject(body, "title", o.title);
		if (!strcmp(verb, "suspend") || !strcmp(verb, "resume"))
			cJSON_AddStringToObject(body, "status",
			                        verb[0] == 's' ? "suspended" : "active");
		else if (o.status)
			cJSON_AddStringToObject(body, "status", o.status);
		rc = pairs(cmd, u, ov, o.overrides, o.noverrides, true);
		if (rc == 0)
			rc = pairs(cmd, u, md, o.meta, o.nmeta, false);
		if (rc != 0) {
			cJSON_Delete(ov);
			cJSON_Delete(md);
			cJSON_Delete(body);
			return rc;
		}
		if (o.noverrides)
			cJSON_AddItemToObject(body, "overrides", ov);
		else
			cJSON_Delete(ov);
		if (o.nmeta)
			cJSON_AddItemToObject(body, "metadata", md);
		else
			cJSON_Delete(md);
		if (!add && cJSON_GetArraySize(body) == 0) {
			cJSON_Delete(body);
			return sl_usage_error(u, cmd, "%s", "nothing to change");
		}
		rc = call(cmd, &o, add ? "POST" : "PATCH", add ? "/v1/accounts" : path, body, &j,
		          o.json);
	}
	if (rc == 0 && j != NULL && !o.json)
		print_account(j);
	cJSON_Delete(body);
	cJSON_Delete(j);
	return rc;
}

/* ---- sluice keys ---- */

int sl_cmd_keys(int argc, char **argv)
{
	const char *verb;
	void (*u)(FILE *) = sl_usage_keys;
	char cmd[64], path[1024], arg[768];
	struct opts o;
	cJSON *body = NULL, *j = NULL;
	int rc = verb_of("keys", u, argc, argv, cmd, sizeof(cmd), &verb);

	if (rc >= 0)
		return rc;
	if (strcmp(verb, "issue") && strcmp(verb, "list") && strcmp(verb, "rotate") &&
	    strcmp(verb, "revoke"))
		return sl_usage_error(u, "keys", "unknown verb '%s'", verb);
	rc = parse(cmd, u, argc, argv, &o);
	if (rc >= 0)
		return rc;
	bool by_account = !strcmp(verb, "issue") || !strcmp(verb, "list");
	if ((rc = need(cmd, u, &o, 1,
	               by_account ? "one ACCOUNT is required" : "one KEY_ID is required")) != 0)
		return rc;
	seg(arg, sizeof(arg), o.args[0]);
	if (!strcmp(verb, "list")) {
		snprintf(path, sizeof(path), "/v1/accounts/%s", arg);
		rc = call(cmd, &o, "GET", path, NULL, &j, false);
		if (rc == 0 && j != NULL) {
			const cJSON *keys = cJSON_GetObjectItemCaseSensitive(j, "keys");
			char *s;

			if (o.json) {
				s = cJSON_PrintUnformatted(keys);
				printf("{\"keys\":%s}\n", s ? s : "[]");
				free(s);
			} else {
				table(keys, key_fields, key_titles, 6);
			}
		}
	} else if (!strcmp(verb, "revoke")) {
		snprintf(path, sizeof(path), "/v1/keys/%s", arg);
		rc = call(cmd, &o, "DELETE", path, NULL, &j, o.json);
		if (rc == 0 && !o.json)
			printf("revoked %s\n", o.args[0]);
	} else {
		body = cJSON_CreateObject();
		if (!strcmp(verb, "issue")) {
			snprintf(path, sizeof(path), "/v1/accounts/%s/keys", arg);
			if (o.label)
				cJSON_AddStringToObject(body, "label", o.label);
			if (o.expires && strcmp(o.expires, "never") != 0)
				cJSON_AddStringToObject(body, "expires", o.expires);
			else if (o.expires)
				cJSON_AddNullToObject(body, "expires");
		} else {
			snprintf(path, sizeof(path), "/v1/keys/%s/rotate", arg);
			if (o.grace)
				cJSON_AddStringToObject(body, "grace", o.grace);
		}
		rc = call(cmd, &o, "POST", path, body, &j, o.json);
		if (rc == 0 && j != NULL && !o.json)
			print_new_key(j);
	}
	cJSON_Delete(body);
	cJSON_Delete(j);
	return rc;
}
