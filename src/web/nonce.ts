// The daemon's CSP allows <style> elements only with this response's nonce (script-src stays 'self' only).
// xterm.js builds its style elements at run time, so every style element this document creates gets the nonce,
// as webpack's __webpack_nonce__ does for style loaders. Injected markup cannot know the nonce.
const nonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content ?? '';
if (nonce && nonce !== '__CSP_NONCE__') {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, options?: ElementCreationOptions) {
    const el = create.call(this, tag, options);
    if (tag.toLowerCase() === 'style') (el as HTMLStyleElement).nonce = nonce;
    return el;
  } as typeof Document.prototype.createElement;
}
export {};
