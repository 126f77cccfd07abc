// Vite bundles imported CSS files into the page's stylesheet.
declare module '*.css';
