/* placeholder so the store layer library has a source; replaced as the layer lands. */
typedef int sl_store_placeholder_t;
