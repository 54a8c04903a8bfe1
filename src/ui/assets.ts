/**
 * The page's own assets, read once at start and served under a content-hashed name, so they can
 * be cached for a year and a new release is fetched at once. Nothing is loaded from elsewhere.
 * `npm run build` copies src/ui/assets next to the compiled module (dist/ui/assets).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface Asset {
  /** The URL path, e.g. /ui/assets/status.3f2a1b0c.css */
  url: string;
  body: Buffer;
  type: string;
}

const FILES: Record<string, string> = {
  'status.css': 'text/css; charset=utf-8',
  'live.js': 'text/javascript; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

export function loadAssets(prefix = '/ui/assets'): { byName: Map<string, Asset>; byUrl: Map<string, Asset> } {
  const byName = new Map<string, Asset>();
  const byUrl = new Map<string, Asset>();
  for (const [name, type] of Object.entries(FILES)) {
    const body = readFileSync(new URL(`./assets/${name}`, import.meta.url));
    const hash = createHash('sha256').update(body).digest('hex').slice(0, 12);
    const dot = name.lastIndexOf('.');
    const asset = { url: `${prefix}/${name.slice(0, dot)}.${hash}${name.slice(dot)}`, body, type };
    byName.set(name, asset);
    byUrl.set(asset.url, asset);
  }
  return { byName, byUrl };
}

export type Assets = ReturnType<typeof loadAssets>;
