#!/usr/bin/env node
// Drives Debian's headless Chromium for tests/integration/test_browser.py.
//
//   node tests/browser/driver.js
//
// It launches /usr/bin/chromium through playwright-core (never a browser of its
// own: nothing is downloaded) with a fresh profile directory, then reads one
// JSON command per line on stdin and answers one JSON line per command on
// stdout:  {"id":N,"ok":true,"value":...}  or  {"id":N,"ok":false,"error":"..."}.
// The first line it prints is {"ready":true,"version":"<chromium version>"}.
//
// Commands ("cmd"):
//   page        {page, url, context?, viewport?, mobile?}   open a page (a context
//                 is created on first use: contexts do not share storage)
//   eval        {page, expr}        evaluate a JS expression in the page (awaited)
//   wait        {page, expr, ms?}   until the expression is truthy (at most ms,
//                 default 15000); its value
//   fill        {page, selector, text}
//   click       {page, selector}
//   press       {page, selector, key}
//   screenshot  {page, path, fullPage?}
//   logs        {page}              console messages and page errors so far
//   close       {page}              (and its context, with its last page)
//   quit        {}
//
// Environment: PUSH_CHROMIUM (default /usr/bin/chromium).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

const EXECUTABLE = process.env.PUSH_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'];

// A fresh directory for this run: Chromium's profile (user-data dir) is created
// in it, and it is removed at exit.
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'push-browser-'));
process.env.TMPDIR = TMP;
const { chromium } = require('playwright-core');

let browser = null;
const contexts = new Map();
const pages = new Map();      // name -> {page, logs}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function cleanup() {
  try { fs.rmSync(TMP, { recursive: true, force: true }); } catch (e) { /* best effort */ }
}

function getPage(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page named ${name}`);
  return p;
}

async function context(name, opts) {
  if (contexts.has(name)) return contexts.get(name);
  const o = { viewport: opts.viewport || { width: 1280, height: 800 } };
  if (opts.mobile) Object.assign(o, { isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const ctx = await browser.newContext(o);
  contexts.set(name, ctx);
  return ctx;
}

const commands = {
  async page(c) {
    const ctx = await context(c.context || c.page, c);
    const page = await ctx.newPage();
    const entry = { page, logs: [] };
    page.on('console', (m) => entry.logs.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => entry.logs.push(`pageerror: ${e.stack || e}`));
    pages.set(c.page, entry);
    if (c.url) await page.goto(c.url, { waitUntil: 'load' });
    return true;
  },
  async eval(c) {
    return getPage(c.page).page.evaluate(c.expr);
  },
  async wait(c) {
    const h = await getPage(c.page).page.waitForFunction(c.expr, null,
      { timeout: c.ms || 15000, polling: 50 });
    return h.jsonValue();
  },
  async fill(c) {
    await getPage(c.page).page.fill(c.selector, c.text);
    return true;
  },
  async click(c) {
    await getPage(c.page).page.click(c.selector);
    return true;
  },
  async press(c) {
    await getPage(c.page).page.press(c.selector, c.key);
    return true;
  },
  async screenshot(c) {
    fs.mkdirSync(path.dirname(c.path), { recursive: true });
    await getPage(c.page).page.screenshot({ path: c.path, fullPage: !!c.fullPage });
    return fs.statSync(c.path).size;
  },
  async logs(c) {
    return getPage(c.page).logs;
  },
  async close(c) {
    const p = pages.get(c.page);
    if (p) {
      pages.delete(c.page);
      const ctx = p.page.context();
      await p.page.close();
      if (!ctx.pages().length) {          // its last page: the context goes too
        for (const [name, x] of contexts) if (x === ctx) contexts.delete(name);
        await ctx.close();
      }
    }
    return true;
  },
  async quit() {
    if (browser) await browser.close();
    browser = null;
    return true;
  },
};

async function main() {
  browser = await chromium.launch({ executablePath: EXECUTABLE, headless: true, args: ARGS });
  out({ ready: true, version: browser.version() });
  const rl = readline.createInterface({ input: process.stdin });
  // One command at a time, in order.
  let chain = Promise.resolve();
  rl.on('line', (line) => {
    if (!line.trim()) return;
    chain = chain.then(async () => {
      let c;
      try {
        c = JSON.parse(line);
        const fn = commands[c.cmd];
        if (!fn) throw new Error(`unknown command ${c.cmd}`);
        const value = await fn(c);
        out({ id: c.id, ok: true, value: value === undefined ? null : value });
      } catch (e) {
        out({ id: c && c.id, ok: false, error: String(e && e.stack || e) });
      }
      if (c && c.cmd === 'quit') {
        cleanup();
        process.exit(0);
      }
    });
  });
  rl.on('close', async () => {
    await chain;
    if (browser) await browser.close().catch(() => {});
    cleanup();
    process.exit(0);
  });
}

process.on('SIGTERM', async () => {
  if (browser) await browser.close().catch(() => {});
  cleanup();
  process.exit(1);
});

main().catch((e) => {
  out({ ready: false, error: String(e && e.stack || e) });
  cleanup();
  process.exit(1);
});
