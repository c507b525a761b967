// Each scenario drives @deepstream/client 7.0.5 against a node and throws on any deviation.
// usage: node scenarios.mjs <ws-url>[,<ws-url>...] <scenario>
// With several URLs (the nodes of a cluster) the i-th client a scenario creates connects to url[i % n].
import deepstreamModule from '@deepstream/client'
import { fail, assertEqual, within as withinMs, sleep } from './assertions.mjs'

const { DeepstreamClient } = deepstreamModule
const [urlList, scenario] = process.argv.slice(2)
const urls = urlList.split(',')
let clients = 0
const TIMEOUT = 10000

const within = (promise, what, ms = TIMEOUT) => withinMs(promise, what, ms)
function nextEvent (emitter, event, what) { return within(new Promise(resolve => emitter.once ? emitter.once(event, resolve) : emitter.on(event, resolve)), what) }
function connect () { return new DeepstreamClient(urls[clients++ % urls.length], { maxReconnectAttempts: 0 }) }
async function login (authData = {}) {
  const client = connect()
  client.on('error', (error, event) => { if (!client.__quiet) console.error('client error', event, error) })
  await within(client.login(authData), 'login')
  return client
}
function close (...clients) { for (const c of clients) { c.__quiet = true; c.close() } }

const scenarios = {
  async 'login-good' () {
    const c = await login({ username: 'alice', password: 'alicepw' })
    assertEqual(c.getConnectionState(), 'OPEN', 'state')
    close(c)
  },
  async 'login-client-data' () {
    const c = connect()
    const data = await within(c.login({ username: 'alice', password: 'alicepw' }), 'login')
    assertEqual(data, { role: 'tester', name: 'Alice' }, 'clientData')
    close(c)
  },
  async 'login-bad' () {
    const c = connect()
    c.on('error', () => {})
    let refused = false
    try { await within(c.login({ username: 'alice', password: 'wrong' }), 'login') } catch (e) { refused = true }
    if (!refused) fail('a wrong password logged in')
    close(c)
  },
  async 'events' () {
    const a = await login({ username: 'a' }); const b = await login({ username: 'b' })
    const got = []
    const received = new Promise(resolve => b.event.subscribe('chat', data => { got.push(data); resolve() }))
    const echo = []
    a.event.subscribe('chat', data => echo.push(data))
    await sleep(300) // the client batches subscriptions for 100 ms
    a.event.emit('chat', { text: 'hi' })
    await within(received, 'event at b')
    assertEqual(got, [{ text: 'hi' }], 'b received')
    assertEqual(echo, [{ text: 'hi' }], 'a fires its own callback locally, once (the node does not echo)')
    b.event.unsubscribe('chat')
    close(a, b)
  },
  async 'records' () {
    const a = await login({ username: 'a' }); const b = await login({ username: 'b' })
    const name = 'conf/rec-' + Date.now()
    const ra = a.record.getRecord(name); await within(ra.whenReady(), 'ready a')
    assertEqual(ra.get(), {}, 'new record')
    assertEqual(ra.version, 0, 'new version')
    const rb = b.record.getRecord(name); await within(rb.whenReady(), 'ready b')
    const seen = new Promise(resolve => rb.subscribe('title', v => { if (v === 'milk') resolve() }))
    ra.set({ title: 'milk', done: false })
    await within(seen, 'update at b')
    await within(ra.setWithAck('done', true), 'path setWithAck')
    await within(new Promise(resolve => rb.subscribe('done', v => { if (v === true) resolve() }, true)), 'patch at b')
    ra.erase('title')
    await within(new Promise(resolve => { const check = () => { if (rb.get('title') === undefined) resolve(); else setTimeout(check, 20) }; check() }), 'erase at b')
    assertEqual(rb.get(), { done: true }, 'b data after erase')
    const snapshot = await within(b.record.snapshot(name), 'snapshot')
    assertEqual(snapshot, { done: true }, 'snapshot')
    assertEqual(await within(b.record.head(name), 'head'), 3, 'head')
    assertEqual(await within(b.record.has(name), 'has'), true, 'has')
    assertEqual(await within(b.record.has(name + '-missing'), 'has missing'), false, 'has missing')
    await within(a.record.setDataWithAck(name + '-data', { x: 1 }), 'setDataWithAck')
    assertEqual(await within(b.record.snapshot(name + '-data'), 'snapshot data'), { x: 1 }, 'setData snapshot')
    const deleted = new Promise(resolve => rb.on('delete', resolve))
    await within(ra.delete(), 'delete')
    await within(deleted, 'delete at b')
    close(a, b)
  },
  async 'record-conflict' () {
    const a = await login({ username: 'a' }); const b = await login({ username: 'b' })
    const name = 'conf/conflict-' + Date.now()
    const ra = a.record.getRecord(name); const rb = b.record.getRecord(name)
    await within(Promise.all([ra.whenReady(), rb.whenReady()]), 'ready')
    ra.set({ by: 'a' }); rb.set({ by: 'b' })
    await within(new Promise(resolve => { const check = () => { if (ra.version === rb.version && JSON.stringify(ra.get()) === JSON.stringify(rb.get())) resolve(); else setTimeout(check, 20) }; check() }), 'converge')
    close(a, b)
  },
  async 'lists' () {
    const a = await login({ username: 'a' }); const b = await login({ username: 'b' })
    const name = 'conf/list-' + Date.now()
    const la = a.record.getList(name); await within(la.whenReady(), 'list a')
    const lb = b.record.getList(name); await within(lb.whenReady(), 'list b')
    la.addEntry('x'); la.addEntry('y')
    await within(new Promise(resolve => { const check = () => { if (lb.getEntries().length === 2) resolve(); else setTimeout(check, 20) }; check() }), 'entries at b')
    assertEqual(lb.getEntries(), ['x', 'y'], 'entries')
    close(a, b)
  },
  async 'rpc' () {
    const provider = await login({ username: 'p' }); const caller = await login({ username: 'c' })
    provider.rpc.provide('add', (data, response) => response.send(data.a + data.b))
    provider.rpc.provide('fail', (data, response) => response.error('nope'))
    await sleep(300)
    assertEqual(await within(caller.rpc.make('add', { a: 2, b: 3 }), 'make'), 5, 'add')
    let error
    try { await within(caller.rpc.make('fail', null), 'make fail') } catch (e) { error = e }
    assertEqual(error, 'nope', 'error')
    try { await within(caller.rpc.make('missing', null), 'make missing') } catch (e) { error = e }
    assertEqual(error, 'NO_RPC_PROVIDER', 'no provider')
    close(provider, caller)
  },
  async 'rpc-reject' () {
    const rejecter = await login({ username: 'r' }); const worker = await login({ username: 'w' }); const caller = await login({ username: 'c' })
    rejecter.rpc.provide('job', (data, response) => response.reject())
    worker.rpc.provide('job', (data, response) => response.send('done'))
    await sleep(300)
    for (let i = 0; i < 5; i++) assertEqual(await within(caller.rpc.make('job', i), 'make'), 'done', 'rerouted')
    close(rejecter, worker, caller)
  },
  async 'presence' () {
    const watcher = await login({ username: 'watcher' })
    const joins = []
    watcher.presence.subscribe((user, online) => joins.push([user, online]))
    await sleep(300)
    const ana = await login({ username: 'ana' })
    await within(new Promise(resolve => { const check = () => { if (joins.length >= 1) resolve(); else setTimeout(check, 20) }; check() }), 'join')
    assertEqual(await within(watcher.presence.getAll(), 'getAll'), ['ana'], 'query all excludes the asker')
    assertEqual(await within(watcher.presence.getAll(['ana', 'bob']), 'get some'), { ana: true, bob: false }, 'query')
    close(ana)
    await within(new Promise(resolve => { const check = () => { if (joins.length >= 2) resolve(); else setTimeout(check, 20) }; check() }), 'leave')
    assertEqual(joins, [['ana', true], ['ana', false]], 'join then leave')
    close(watcher)
  },
  async 'listening' () {
    const provider = await login({ username: 'p' }); const subscriber = await login({ username: 's' })
    const events = []
    provider.record.listen('^conf/listen/.*', (name, response) => {
      events.push('found ' + name)
      response.accept()
      response.onStop(() => events.push('removed ' + name))
    })
    await sleep(300)
    const name = 'conf/listen/' + Date.now()
    const record = subscriber.record.getRecord(name)
    await within(record.whenReady(), 'ready')
    await within(new Promise(resolve => { const check = () => { if (record.hasProvider) resolve(); else setTimeout(check, 20) }; check() }), 'has provider')
    record.discard()
    await within(new Promise(resolve => { const check = () => { if (events.length === 2) resolve(); else setTimeout(check, 50) }; check() }), 'removed', 15000)
    assertEqual(events, ['found ' + name, 'removed ' + name], 'listen lifecycle')
    close(provider, subscriber)
  },
  async 'listening-reject' () {
    // Two listeners, offered in random order: whenever the picky one is asked first, its reject passes the offer on.
    const picky = await login({ username: 'picky' }); const willing = await login({ username: 'willing' }); const subscriber = await login({ username: 's' })
    const offers = []
    picky.event.listen('^conf/feed/.*', (name, response) => { offers.push(['picky', name]); response.reject() })
    willing.event.listen('^conf/feed/.*', (name, response) => { offers.push(['willing', name]); response.accept() })
    await sleep(300)
    const names = Array.from({ length: 20 }, (_, i) => `conf/feed/${Date.now()}-${i}`)
    for (const name of names) subscriber.event.subscribe(name, () => {})
    await within(new Promise(resolve => { const check = () => { if (offers.filter(o => o[0] === 'willing').length === names.length) resolve(); else setTimeout(check, 20) }; check() }), 'every name reaches the willing listener')
    for (const name of names) {
      const order = offers.filter(o => o[1] === name).map(o => o[0])
      if (!(JSON.stringify(order) === '["willing"]' || JSON.stringify(order) === '["picky","willing"]')) fail(`offers for ${name}: ${JSON.stringify(order)}`)
    }
    if (!offers.some(o => o[0] === 'picky')) fail('the picky listener was never asked first in 20 names')
    close(picky, willing, subscriber)
  },
}

const run = scenarios[scenario] ?? (() => fail(`unknown scenario ${scenario}; known: ${Object.keys(scenarios).join(', ')}`))
run().then(() => { console.log('OK ' + scenario); process.exit(0) }, error => { console.error('FAILED ' + scenario + ': ' + (error && error.stack || error)); process.exit(1) })
