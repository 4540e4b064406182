// <lookalike-similar>: a row of look-alike products for any page.
//
//   <script type="module" src="https://shop.example/lookalike/www/lookalike-widget.js"></script>
//   <lookalike-similar product="15970" k="6"></lookalike-similar>
//
// Attributes: `product` (a catalog id), `k` (how many, default 6), `site`
// (the built site's URL; default: the site this script was loaded from),
// `same-label` (only products of the same label), `weights` (parts of the
// similarity re-weighted, e.g. "colour=0.4, visual=0.6"; default: the
// site's own weights, see docs/quality.md). Everything runs in the
// browser: the element loads the site's small browsing wasm (no models) and
// index once per page (engine.js, shared by every element) and queries
// them locally. Catalog strings are
// set as text, never parsed as HTML; styles are a constructed stylesheet, so
// a strict Content-Security-Policy (no inline styles or eval) is enough.

import { loadEngine } from './engine.js';
import { shopLink } from './links.js';

const STYLE = `
:host { display: block; font-family: system-ui, sans-serif; }
ol { list-style: none; margin: 0; padding: 0; display: grid; gap: .6rem; grid-template-columns: repeat(auto-fill, minmax(110px, 1fr)); }
a { display: flex; flex-direction: column; color: inherit; text-decoration: none; border: 1px solid #ddd; border-radius: .5rem; padding: .35rem; background: #fff; }
a:hover { border-color: #88a; }
a:focus-visible { outline: 3px solid #3355ff; outline-offset: 2px; }
img { width: 100%; aspect-ratio: 3 / 4; object-fit: contain; }
.title { font-size: .8rem; line-height: 1.2; margin-top: .25rem; }
.note { font-size: .8rem; color: #666; }
`;

/// A link for a product: its page in the shop when the catalog has one, else
/// the site's page for it.
function productLink(product, site) {
  const page = new URL('index.html', site);
  page.searchParams.set('product', product.id);
  return shopLink(product) || page.href;
}

/// "colour=0.4, visual=0.6" -> { colour: 0.4, visual: 0.6 }; unknown parts
/// and bad numbers are reported by the index, by name.
function parseWeights(text) {
  if (!text || !text.trim()) return undefined;
  const weights = {};
  for (const pair of text.split(',')) {
    const [name, value] = pair.split('=').map((s) => s.trim());
    if (!name || value === undefined || value === '' || Number.isNaN(Number(value))) throw new Error(`weights: "${pair.trim()}" is not NAME=NUMBER`);
    weights[name] = Number(value);
  }
  return weights;
}

class LookalikeSimilar extends HTMLElement {
  static observedAttributes = ['product', 'k', 'site', 'same-label', 'weights'];

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
    root.adoptedStyleSheets = [sheet];
    this.list = document.createElement('ol');
    this.list.setAttribute('aria-label', 'Similar products');
    root.append(this.list);
  }

  connectedCallback() { this.render(); }

  attributeChangedCallback() { if (this.isConnected) this.render(); }

  async render() {
    const product = this.getAttribute('product');
    if (!product) return;
    const k = Math.max(1, Math.min(50, Number(this.getAttribute('k')) || 6));
    const site = new URL(this.getAttribute('site') || new URL('..', import.meta.url).href, document.baseURI).href;
    const ticket = (this.ticket = {});
    try {
      const { index, paged, manifest } = await loadEngine(site.endsWith('/') ? site : `${site}/`);
      if (ticket !== this.ticket) return; // a newer render started
      let hits;
      if (paged) {
        // A paged site: the lookup, lists and metadata come by byte range.
        ({ hits } = await paged.item(product, { k, sameLabel: this.hasAttribute('same-label') }));
        if (ticket !== this.ticket) return;
        if (!hits) throw new Error(`no product "${product}" in this catalog`);
      } else {
        const item = index.itemOf(product);
        if (item === undefined) throw new Error(`no product "${product}" in this catalog`);
        hits = index.queryItem(item, k, undefined, this.hasAttribute('same-label'), undefined, parseWeights(this.getAttribute('weights')));
      }
      const fragment = document.createDocumentFragment();
      for (const hit of hits) {
        const p = hit.product || manifest.products[hit.item];
        const li = document.createElement('li');
        const a = document.createElement('a');
        a.href = productLink(p, site);
        a.dataset.id = p.id;
        const img = document.createElement('img');
        img.loading = 'lazy'; // before src: WebKit fetches as soon as src is set
        img.alt = p.title || `Product ${p.id}`;
        img.src = new URL(p.thumb, site).href;
        const title = document.createElement('span');
        title.className = 'title';
        title.textContent = p.title || p.id;
        a.append(img, title);
        li.append(a);
        fragment.append(li);
      }
      this.list.replaceChildren(fragment);
      this.dataset.state = 'ready';
      this.dispatchEvent(new CustomEvent('lookalike-ready', { detail: { hits } }));
    } catch (error) {
      const note = document.createElement('li');
      note.className = 'note';
      note.textContent = `Similar products are unavailable: ${error.message || error}`;
      this.list.replaceChildren(note);
      this.dataset.state = 'error';
    }
  }
}

customElements.define('lookalike-similar', LookalikeSimilar);
