// Two headless Chromium pages on the TodoMvc sample. usage: node todomvc.mjs <base-url> <phase>
//   phase "sync":       add, tick, edit, filter, count, delete and clear completed in one page, each seen in the other;
//                       leaves "buy milk", completed
//   phase "concurrent": many rounds of both pages adding todos at the same moment; no todo is lost, and both pages
//                       end with the same list
//   phase "restart":    after the node restarted, a fresh page still shows "buy milk", completed
//   phase "add" <title>, "expect" <title>: one todo added by a user; a fresh page shows a todo (for the webhook bridge)
import { chromium } from 'playwright-core'

const [base, phase, roundsArg] = process.argv.slice(2)
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
const timeout = 15000

function check (condition, message) {
  if (!condition) throw new Error(message)
}

async function open () {
  const page = await (await browser.newContext()).newPage()
  page.on('pageerror', error => console.log('page error: ' + error.message))
  if (process.env.TODOMVC_CONSOLE) page.on('console', m => console.log('console: ' + m.text()))
  await page.goto(base)
  await page.waitForSelector('body[data-ready="true"]', { timeout })
  return page
}

const item = (page, title) => page.locator('#todo-list li', { has: page.locator('label', { hasText: new RegExp(`^${title}$`) }) })

async function add (page, title) {
  await page.fill('#new-todo', title)
  await page.press('#new-todo', 'Enter')
}

async function titles (page) {
  return page.locator('#todo-list li label').allTextContents()
}

try {
  if (phase === 'sync') {
    const a = await open()
    const b = await open()
    check(await a.textContent('#status') === 'Connected: changes sync live', 'the connection state is not shown in words: ' + await a.textContent('#status'))
    await add(a, 'buy milk')
    await add(a, 'walk the dog')
    await add(a, 'water plants')
    await item(b, 'water plants').waitFor({ timeout })
    check(JSON.stringify(await titles(b)) === JSON.stringify(['buy milk', 'walk the dog', 'water plants']), 'order in the other page: ' + await titles(b))
    await b.waitForFunction(() => document.getElementById('todo-count').textContent === '3 items left', null, { timeout })

    // Ticked in B, completed in A; the count follows.
    await item(b, 'buy milk').locator('input.toggle').check()
    await a.locator('#todo-list li.completed', { hasText: 'buy milk' }).waitFor({ timeout })
    await a.waitForFunction(() => document.getElementById('todo-count').textContent === '2 items left', null, { timeout })

    // Edited in A (double-click, type, Enter), the new title in B.
    await item(a, 'walk the dog').locator('label').dblclick()
    await a.fill('#todo-list li.editing input.edit', 'walk the cat')
    await a.press('#todo-list li.editing input.edit', 'Enter')
    await item(b, 'walk the cat').waitFor({ timeout })
    check(await item(b, 'walk the dog').count() === 0, 'the old title is still shown')

    // Filters.
    await b.click('#filters a[data-filter="active"]')
    await b.waitForFunction(() => [...document.querySelectorAll('#todo-list li label')].map(l => l.textContent).join() === 'walk the cat,water plants', null, { timeout })
    await b.click('#filters a[data-filter="completed"]')
    await b.waitForFunction(() => [...document.querySelectorAll('#todo-list li label')].map(l => l.textContent).join() === 'buy milk', null, { timeout })
    await b.click('#filters a[data-filter="all"]')

    // Deleted in B, gone in A.
    await item(b, 'water plants').hover()
    await item(b, 'water plants').locator('button.destroy').click()
    await item(a, 'water plants').waitFor({ state: 'detached', timeout })

    // Clear completed: tick "walk the cat" and a new one, clear them in A; B keeps only "buy milk", which is re-added
    // as completed so that the restart phase finds it.
    await add(b, 'call mum')
    await item(a, 'call mum').locator('input.toggle').check()
    await item(a, 'walk the cat').locator('input.toggle').check()
    await a.waitForFunction(() => document.getElementById('todo-count').textContent === '0 items left', null, { timeout })
    await item(b, 'call mum').and(b.locator('li.completed')).waitFor({ timeout })
    await a.click('#clear-completed')
    await b.waitForFunction(() => document.getElementById('footer').hidden, null, { timeout })
    check((await titles(b)).length === 0, 'clear completed left: ' + await titles(b))
    await add(b, 'buy milk')
    await item(a, 'buy milk').locator('input.toggle').check()
    await b.locator('#todo-list li.completed', { hasText: 'buy milk' }).waitFor({ timeout })
    console.log('sync: ' + JSON.stringify(await titles(a)))
  } else if (phase === 'concurrent') {
    const rounds = Number(roundsArg ?? 20)
    const a = await open()
    const b = await open()
    const before = Number(await a.getAttribute('body', 'data-count'))
    for (let round = 0; round < rounds; round++) {
      // Both pages add three todos in one tick each, at the same moment.
      await Promise.all([
        a.evaluate(r => window.todomvc.add([`a${r}-1`, `a${r}-2`, `a${r}-3`]), round),
        b.evaluate(r => window.todomvc.add([`b${r}-1`, `b${r}-2`, `b${r}-3`]), round),
      ])
      const expected = before + 6 * (round + 1)
      for (const page of [a, b]) {
        await page.waitForFunction(n => document.body.dataset.count === String(n), expected, { timeout })
          .catch(async () => { throw new Error(`round ${round}: expected ${expected} todos, the page shows ${await page.getAttribute('body', 'data-count')}: ${await titles(page)}`) })
      }
    }
    // Every change confirmed by the node, and a third page, which only reads, sees exactly what both pages show.
    for (const page of [a, b]) await page.waitForFunction(() => window.todomvc.pending() === 0, null, { timeout })
    const c = await open()
    await c.waitForFunction(n => document.body.dataset.count === String(n), before + 6 * rounds, { timeout })
      .catch(async () => { throw new Error(`a fresh page shows ${await c.getAttribute('body', 'data-count')} todos, not ${before + 6 * rounds}`) })
    const inA = await titles(a)
    const inB = await titles(b)
    const inC = await titles(c)
    check(JSON.stringify(inA) === JSON.stringify(inB) && JSON.stringify(inA) === JSON.stringify(inC), `the pages differ:\n${inA}\n${inB}\n${inC}`)
    for (let round = 0; round < rounds; round++) {
      for (const who of ['a', 'b']) {
        for (const n of [1, 2, 3]) check(inA.includes(`${who}${round}-${n}`), `${who}${round}-${n} was lost`)
      }
    }
    const merges = (await a.evaluate(() => window.todomvc.merges())) + (await b.evaluate(() => window.todomvc.merges()))
    // The adds must really have collided, or this phase proved nothing.
    check(merges > 0, 'no write of the list ever conflicted: the adds were not concurrent')
    console.log(`concurrent: ${rounds} rounds, ${inA.length - before} todos added, ${merges} merges`)
  } else if (phase === 'add') {
    // One todo added by a user, confirmed by the node. argv: the title.
    const a = await open()
    await add(a, roundsArg)
    await a.waitForFunction(() => window.todomvc.pending() === 0, null, { timeout })
    await item(a, roundsArg).waitFor({ timeout })
  } else if (phase === 'expect') {
    // A fresh page shows a todo with this title (one that arrived some other way). argv: the title.
    const c = await open()
    await item(c, roundsArg).waitFor({ timeout })
  } else if (phase === 'restart') {
    const c = await open()
    await c.locator('#todo-list li.completed', { hasText: 'buy milk' }).waitFor({ timeout })
  } else {
    throw new Error('unknown phase ' + phase)
  }
  console.log('OK ' + phase)
} finally {
  await browser.close()
}
