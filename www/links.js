// Where a product lives in the shop: a `url`, `link`, `product_url` or `href`
// column with an http(s) address (never `javascript:` or other schemes).
// Shared by the page and the storefront widget.
export function shopLink(product) {
  for (const column of ['url', 'link', 'product_url', 'href']) {
    const value = product.metadata && product.metadata[column];
    if (typeof value === 'string' && /^https?:\/\//.test(value)) return value;
  }
  return null;
}
