/* placeholder so the http layer library has a source; replaced as the layer lands. */
typedef int sl_http_placeholder_t;
