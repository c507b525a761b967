// Two headless Chromium pages on the TodoMvc sample. usage: node todomvc.mjs <base-url> <phase>
//   phase "sync":    a todo added in one page appears in the other; ticked in the other, it is done in the first
//   phase "restart": after the node restarted, a fresh page still shows the todo, done
import { chromium } from 'playwright-core'

const [base, phase] = process.argv.slice(2)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
const timeout = 15000
try {
  if (phase === 'sync') {
    const a = await (await browser.newContext()).newPage()
    const b = await (await browser.newContext()).newPage()
    await a.goto(base); await b.goto(base)
    await a.waitForSelector('body[data-ready="true"]', { timeout }); await b.waitForSelector('body[data-ready="true"]', { timeout })
    await a.fill('#new-todo', 'buy milk')
    await a.press('#new-todo', 'Enter')
    await b.waitForSelector('li:has-text("buy milk")', { timeout })
    await b.check('li:has-text("buy milk") input[type=checkbox]')
    await a.waitForSelector('li.done:has-text("buy milk")', { timeout })
  } else if (phase === 'restart') {
    const c = await (await browser.newContext()).newPage()
    await c.goto(base)
    await c.waitForSelector('li.done:has-text("buy milk")', { timeout })
  } else {
    throw new Error('unknown phase ' + phase)
  }
  console.log('OK ' + phase)
} finally {
  await browser.close()
}
