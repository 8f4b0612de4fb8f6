/* placeholder so the net layer library has a source; replaced as the layer lands. */
typedef int sl_net_placeholder_t;
