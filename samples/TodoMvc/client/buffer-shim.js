// The deepstream client refers to Node's Buffer; in the browser, esbuild injects this polyfill for it.
export { Buffer } from 'buffer'
