// The three engines shoppers use, behind one small page API, for the
// browser test and `bench web`. Every browser is Debian's, never a download:
//   - chromium: Debian's `chromium` through playwright-core (DevTools
//     protocol); the only engine here with a WebGPU adapter (SwiftShader);
//   - firefox: Debian's `firefox-esr` through puppeteer-core (WebDriver BiDi);
//   - webkit: WebKitGTK's MiniBrowser through `WebKitWebDriver` (W3C
//     WebDriver over HTTP) on a private Xvfb display.
//
// The API is what the tests need and no more: goto, evaluate, waitFor,
// click, hover, setInputFiles, selectOption, press (focus an element, press
// a key), drag (a pointer path), count, box, text, screenshot, reload,
// errors (uncaught errors and console errors seen so far), close.
// `engine.can` names what an engine cannot do, so a test can skip that one
// check by name instead of failing or hiding it.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const ENGINES = ['chromium', 'firefox', 'webkit'];

const VIEWPORT = { width: 1200, height: 900 };
const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
export const CHROMIUM_MODES = {
  cpu: [...CHROMIUM_FLAGS, '--disable-gpu'],
  webgpu: [...CHROMIUM_FLAGS, '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader',
    '--enable-unsafe-swiftshader', '--use-angle=swiftshader'],
};

/// Opens `engine` (`mode`: `cpu` or `webgpu`, Chromium only) with one page.
export async function launch(engine, mode = 'cpu') {
  switch (engine) {
    case 'chromium': return launchChromium(mode);
    case 'firefox': return launchFirefox();
    case 'webkit': return launchWebKit();
    default: throw new Error(`unknown engine ${engine}`);
  }
}

/// Errors the page reports, collected in the page itself (for drivers that
/// cannot subscribe to them): installed as early as each driver allows.
const ERROR_COLLECTOR = `(() => {
  if (window.__lookalikeErrors) return;
  window.__lookalikeErrors = [];
  addEventListener('error', (e) => window.__lookalikeErrors.push(String(e.message || e)));
  addEventListener('unhandledrejection', (e) => window.__lookalikeErrors.push(String(e.reason)));
  const original = console.error.bind(console);
  console.error = (...args) => { window.__lookalikeErrors.push(args.map(String).join(' ')); original(...args); };
})()`;

/// Presses, moves along `points` and releases a mouse (Playwright's and
/// Puppeteer's mouse objects take the same calls).
async function dragMouse(mouse, points) {
  await mouse.move(points[0].x, points[0].y);
  await mouse.down();
  for (const p of points.slice(1)) await mouse.move(p.x, p.y, { steps: 4 });
  await mouse.up();
}

async function launchChromium(mode) {
  const { chromium } = await import('playwright-core');
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `lookalike-chromium-${mode}-`));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_MODES[mode], viewport: VIEWPORT,
  });
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return {
    name: mode === 'cpu' ? 'chromium' : `chromium-${mode}`,
    engine: 'chromium',
    mode,
    can: { webgpu: mode === 'webgpu', devtools: true, syntheticPaste: true },
    raw: page,
    errors: async () => errors,
    goto: (url) => page.goto(url),
    reload: () => page.reload(),
    evaluate: (fn, arg) => page.evaluate(fn, arg),
    waitFor: (fn, arg, timeout = 120_000) => page.waitForFunction(fn, arg, { timeout }).then(() => true),
    click: (selector) => page.click(selector),
    hover: (selector) => page.hover(selector),
    setInputFiles: (selector, file) => page.setInputFiles(selector, file),
    selectOption: (selector, value) => page.selectOption(selector, value).then(() => {}),
    press: async (selector, nth, key) => { await page.locator(selector).nth(nth).focus(); await page.keyboard.press(key); },
    drag: (points) => dragMouse(page.mouse, points),
    count: (selector) => page.locator(selector).count(),
    box: (selector) => page.locator(selector).boundingBox(),
    text: (selector) => page.textContent(selector),
    screenshot: (file, selector) => (selector ? page.locator(selector).screenshot({ path: file }) : page.screenshot({ path: file })),
    close: async () => { await context.close(); fs.rmSync(userDataDir, { recursive: true, force: true }); },
  };
}

async function launchFirefox() {
  const puppeteer = (await import('puppeteer-core')).default;
  const browser = await puppeteer.launch({
    browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true, defaultViewport: VIEWPORT,
    // A service worker needs these in automation; offline reloads use it.
    extraPrefsFirefox: { 'dom.serviceWorkers.enabled': true, 'dom.serviceWorkers.testing.enabled': true },
  });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const element = async (selector, nth = 0) => {
    const all = await page.$$(selector);
    if (!all[nth]) throw new Error(`no element ${selector} #${nth}`);
    return all[nth];
  };
  return {
    name: 'firefox',
    engine: 'firefox',
    mode: 'cpu',
    // Firefox hands a script-made ClipboardEvent an empty clipboardData.
    can: { webgpu: false, devtools: false, syntheticPaste: false },
    raw: page,
    errors: async () => errors,
    goto: (url) => page.goto(url),
    reload: () => page.reload(),
    evaluate: (fn, arg) => page.evaluate(fn, arg),
    waitFor: (fn, arg, timeout = 120_000) => page.waitForFunction(fn, { timeout, polling: 50 }, arg).then(() => true),
    click: async (selector) => (await element(selector)).click(),
    hover: async (selector) => (await element(selector)).hover(),
    setInputFiles: async (selector, file) => (await element(selector)).uploadFile(file),
    selectOption: async (selector, value) => { await page.select(selector, value); },
    press: async (selector, nth, key) => { await (await element(selector, nth)).focus(); await page.keyboard.press(key); },
    drag: (points) => dragMouse(page.mouse, points),
    count: async (selector) => (await page.$$(selector)).length,
    box: async (selector) => (await element(selector)).boundingBox(),
    text: (selector) => page.$eval(selector, (e) => e.textContent),
    screenshot: async (file, selector) => (selector ? (await element(selector)).screenshot({ path: file }) : page.screenshot({ path: file })),
    close: () => browser.close(),
  };
}

/// A free TCP port on loopback.
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => { const { port } = server.address(); server.close(() => resolve(port)); });
    server.on('error', reject);
  });
}

const settle = (ms) => new Promise((r) => setTimeout(r, ms));

/// The MiniBrowser WebKitGTK installs (its folder depends on the architecture).
function miniBrowser() {
  for (const lib of fs.readdirSync('/usr/lib')) {
    const candidate = path.join('/usr/lib', lib, 'webkit2gtk-4.1/MiniBrowser');
    if (fs.existsSync(candidate)) return candidate;
  }
  throw new Error('WebKitGTK MiniBrowser not found (Debian package webkit2gtk-driver)');
}

async function launchWebKit() {
  // A private display and driver, torn down with the session.
  let display = 90 + Math.floor(Math.random() * 100);
  while (fs.existsSync(`/tmp/.X11-unix/X${display}`)) display++;
  const xvfb = spawn('Xvfb', [`:${display}`, '-screen', '0', '1280x1024x24', '-nolisten', 'tcp'], { stdio: 'ignore' });
  const port = await freePort();
  const driver = spawn('WebKitWebDriver', [`--port=${port}`, '--host=127.0.0.1'], {
    stdio: 'ignore', env: { ...process.env, DISPLAY: `:${display}` },
  });
  const base = `http://127.0.0.1:${port}`;
  const call = async (method, route, body) => {
    const response = await fetch(base + route, {
      method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await response.json();
    if (json.value && json.value.error) throw new Error(`WebDriver ${route}: ${json.value.error}: ${json.value.message}`);
    return json.value;
  };
  let session;
  for (let attempt = 0; ; attempt++) {
    try {
      session = await call('POST', '/session', { capabilities: { alwaysMatch: {
        'webkitgtk:browserOptions': { binary: miniBrowser(), args: ['--automation'] },
        timeouts: { script: 600_000, pageLoad: 120_000, implicit: 0 },
      } } });
      break;
    } catch (error) {
      if (attempt > 50) { xvfb.kill(); driver.kill(); throw error; }
      await settle(200);
    }
  }
  const s = `/session/${session.sessionId}`;
  await call('POST', `${s}/window/rect`, { width: VIEWPORT.width, height: VIEWPORT.height + 80 }).catch(() => {});
  const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';
  const find = async (selector, nth = 0) => {
    const all = await call('POST', `${s}/elements`, { using: 'css selector', value: selector });
    if (!all[nth]) throw new Error(`no element ${selector} #${nth}`);
    return all[nth][ELEMENT];
  };
  const evaluate = async (fn, arg) => {
    const script = `const done = arguments[arguments.length - 1];
      ${ERROR_COLLECTOR};
      Promise.resolve().then(() => (${fn})(arguments[0])).then(
        (value) => done({ ok: value === undefined ? null : value }),
        (error) => done({ error: String(error && error.stack || error) }));`;
    const result = await call('POST', `${s}/execute/async`, { script, args: [arg === undefined ? null : arg] });
    if (result && 'error' in result) throw new Error(result.error);
    return result ? result.ok : result;
  };
  const keys = { Enter: '\uE007' };
  const pointer = (actions) => call('POST', `${s}/actions`, { actions: [{ type: 'pointer', id: 'mouse', parameters: { pointerType: 'mouse' }, actions }] });
  return {
    name: 'webkit',
    engine: 'webkit',
    mode: 'cpu',
    can: { webgpu: false, devtools: false, syntheticPaste: true },
    errors: () => evaluate(() => window.__lookalikeErrors || []),
    goto: async (url) => { await call('POST', `${s}/url`, { url }); await evaluate(() => true); },
    reload: async () => { await call('POST', `${s}/refresh`, {}); await evaluate(() => true); },
    evaluate,
    waitFor: async (fn, arg, timeout = 120_000) => {
      const until = Date.now() + timeout;
      for (;;) {
        if (await evaluate(fn, arg).catch(() => false)) return true;
        if (Date.now() > until) throw new Error(`timed out after ${timeout} ms waiting for ${String(fn).slice(0, 120)}`);
        await settle(50);
      }
    },
    click: async (selector) => call('POST', `${s}/element/${await find(selector)}/click`, {}),
    hover: async (selector) => {
      await evaluate((selector) => document.querySelector(selector).scrollIntoView({ block: 'center' }), selector);
      await pointer([{ type: 'pointerMove', duration: 0, origin: { [ELEMENT]: await find(selector) }, x: 0, y: 0 }]);
    },
    setInputFiles: async (selector, file) => call('POST', `${s}/element/${await find(selector)}/value`, { text: file }),
    // WebDriver has no select command: set the value as a user's choice would.
    selectOption: (selector, value) => evaluate(({ selector, value }) => {
      const select = document.querySelector(selector);
      select.value = value;
      select.dispatchEvent(new Event('input', { bubbles: true }));
      select.dispatchEvent(new Event('change', { bubbles: true }));
    }, { selector, value }),
    press: async (selector, nth, key) => {
      await evaluate(({ selector, nth }) => document.querySelectorAll(selector)[nth].focus(), { selector, nth });
      const value = keys[key] || key;
      await call('POST', `${s}/actions`, { actions: [{ type: 'key', id: 'keyboard', actions: [{ type: 'keyDown', value }, { type: 'keyUp', value }] }] });
    },
    drag: async (points) => {
      const move = (p) => ({ type: 'pointerMove', duration: 50, origin: 'viewport', x: Math.round(p.x), y: Math.round(p.y) });
      await pointer([move(points[0]), { type: 'pointerDown', button: 0 }, ...points.slice(1).map(move), { type: 'pointerUp', button: 0 }]);
    },
    count: (selector) => evaluate((selector) => document.querySelectorAll(selector).length, selector),
    box: (selector) => evaluate((selector) => {
      const r = document.querySelector(selector).getBoundingClientRect();
      return { x: r.x, y: r.y, width: r.width, height: r.height };
    }, selector),
    text: (selector) => evaluate((selector) => document.querySelector(selector).textContent, selector),
    screenshot: async (file, selector) => {
      const png = selector ? await call('GET', `${s}/element/${await find(selector)}/screenshot`) : await call('GET', `${s}/screenshot`);
      fs.writeFileSync(file, Buffer.from(png, 'base64'));
    },
    close: async () => {
      await call('DELETE', s).catch(() => {});
      driver.kill();
      xvfb.kill();
    },
  };
}
