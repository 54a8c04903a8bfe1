/**
 * Debian's chromium driven by playwright-core (never a downloaded browser): one browser per test
 * file, a fresh profile, and a record of every request and console error for the assertions.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll } from 'vitest';

export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = new URL('../screenshots/', import.meta.url).pathname;

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  context: BrowserContext;
  /** Every URL the browser asked for, in order. */
  requests: string[];
  /** Console errors and uncaught page errors, with the page URL. */
  errors: string[];
  newPage(viewport?: { width: number; height: number }): Promise<Page>;
  screenshot(page: Page, name: string): Promise<string>;
}

export function useBrowser(): TestBrowser {
  let context: BrowserContext | undefined;
  let profile: string | undefined;
  const requests: string[] = [];
  const errors: string[] = [];
  const handle: TestBrowser = {
    get context() {
      if (!context) throw new Error('the browser is used before beforeAll ran');
      return context;
    },
    requests,
    errors,
    async newPage(viewport = { width: 1280, height: 900 }) {
      const page = await handle.context.newPage();
      await page.setViewportSize(viewport);
      page.on('console', (message) => {
        if (message.type() === 'error') errors.push(`${page.url()}: ${message.text()}`);
      });
      page.on('pageerror', (err) => errors.push(`${page.url()}: ${err.message}`));
      return page;
    },
    async screenshot(page, name) {
      await mkdir(SCREENSHOTS, { recursive: true });
      const path = join(SCREENSHOTS, `${name}.png`);
      // Finite animations (a new row's highlight) are shown finished.
      await page.screenshot({ path, fullPage: true, animations: 'disabled' });
      return path;
    },
  };
  beforeAll(async () => {
    profile = await mkdtemp(join(tmpdir(), 'kasgate-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      // Times on the page are relative; a fixed zone and locale keep screenshots comparable.
      timezoneId: 'UTC',
      locale: 'en-GB',
    });
    context.on('request', (request) => requests.push(request.url()));
  });
  afterAll(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });
  return handle;
}
