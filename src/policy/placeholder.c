/* placeholder so the policy layer library has a source; replaced as the layer lands. */
typedef int sl_policy_placeholder_t;
