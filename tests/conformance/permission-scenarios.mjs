// The official client against a node with tests/conformance/permissions/complex.yml in force.
// usage: node permission-scenarios.mjs <ws-url> <scenario>
// Users: ana (serverData role "admin"), bob and cy (role "user"), passwords <name>-pw.
import deepstreamModule from '@deepstream/client'
import { fail, assertEqual, within as withinMs, sleep } from './assertions.mjs'

const { DeepstreamClient } = deepstreamModule
const [url, scenario] = process.argv.slice(2)
const TIMEOUT = 10000
const within = (promise, what, ms = TIMEOUT) => withinMs(promise, what, ms)
const clients = []

async function login (username) {
  const client = new DeepstreamClient(url, { maxReconnectAttempts: 0 })
  client.errors = []
  client.on('error', (error, event, topic) => { client.errors.push({ event, topic, error }) })
  await within(client.login({ username, password: username + '-pw' }), 'login ' + username)
  clients.push(client)
  return client
}

// A write with an acknowledgement: resolves with the error (null when it was accepted).
function setData (client, name, ...args) {
  return within(new Promise(resolve => client.record.setData(name, ...args, error => resolve(error ?? null))), `setData ${name}`)
}

function set (record, ...args) {
  return within(new Promise(resolve => record.set(...args, error => resolve(error ?? null))), `set ${record.name}`)
}

async function refusal (promise, what) {
  try {
    await within(promise, what)
  } catch (error) {
    return String(error)
  }
  fail(`${what} was allowed`)
}

async function errorEvent (client, event, what) {
  const deadline = Date.now() + TIMEOUT
  while (!client.errors.some(e => e.event === event)) {
    if (Date.now() > deadline) fail(`${what}: no ${event} error (errors: ${JSON.stringify(client.errors.map(e => e.event))})`)
    await sleep(20)
  }
}

const scenarios = {
  async 'owner-writes' () {
    const ana = await login('ana')
    const bob = await login('bob')
    assertEqual(await setData(ana, 'profile/ana', { name: 'Ana' }), null, 'ana writes her profile')
    const seenByAna = []
    const watched = ana.record.getRecord('profile/ana')
    await within(watched.whenReady(), 'ana subscribes')
    watched.subscribe('name', name => seenByAna.push(name))
    assertEqual(await setData(bob, 'profile/ana', { name: 'Mallory' }), 'MESSAGE_DENIED', 'bob overwrites ana')
    assertEqual(await setData(bob, 'profile/ana', 'name', 'Mallory'), 'MESSAGE_DENIED', 'bob patches ana')
    assertEqual(await within(bob.record.snapshot('profile/ana'), 'bob reads'), { name: 'Ana' }, 'what bob reads')
    assertEqual(await setData(ana, 'profile/ana', 'name', 'Ana B.'), null, 'ana patches')
    await within((async () => { while (!seenByAna.includes('Ana B.')) await sleep(20) })(), 'ana sees her patch')
    assertEqual(seenByAna.includes('Mallory'), false, 'a denied write reached a subscriber')
    assertEqual(await setData(bob, 'profile/bob', { name: 'Bob' }), null, 'bob writes his own profile')
  },
  async 'data-and-old-data' () {
    const ana = await login('ana')
    const bob = await login('bob')
    const counter = bob.record.getRecord('counter/up')
    await within(counter.whenReady(), 'counter')
    assertEqual(await set(counter, { count: 1 }), null, 'first count')
    assertEqual(await set(counter, 'count', 2), null, 'up')
    assertEqual(await set(counter, 'count', 1), 'MESSAGE_DENIED', 'down')
    // Read by another client: the writer's own copy keeps what it set (the client does not undo a denied write).
    assertEqual(await within(ana.record.snapshot('counter/up'), 'snapshot'), { count: 2 }, 'the node kept')
  },
  async 'cross-reference' () {
    const ana = await login('ana')
    const bob = await login('bob')
    assertEqual(await setData(ana, 'stock/apple', { count: 0 }), null, 'no stock')
    assertEqual(await setData(bob, 'order/1', { item: 'apple' }), 'MESSAGE_DENIED', 'order without stock')
    assertEqual(await within(bob.record.has('order/1'), 'has'), false, 'a denied order was stored')
    assertEqual(await setData(ana, 'stock/apple', 'count', 3), null, 'stock')
    assertEqual(await setData(bob, 'order/1', { item: 'apple' }), null, 'order with stock')
  },
  async 'read-create-delete' () {
    const ana = await login('ana')
    const bob = await login('bob')
    assertEqual(await refusal(bob.record.snapshot('ana-only'), 'bob reads ana-only'), 'MESSAGE_DENIED', 'snapshot')
    const mine = ana.record.getRecord('ana-only')
    await within(mine.whenReady(), 'ana creates ana-only')
    assertEqual(await set(mine, { secret: 1 }), null, 'ana writes ana-only')
    assertEqual(await setData(ana, 'readonly', { x: 1 }), 'MESSAGE_DENIED', 'readonly')
    assertEqual(await setData(bob, 'person/Ada/Lovelace', {}), null, 'ada')
    assertEqual(await setData(bob, 'person/Alan/Turing', {}), null, 'alan')
    const ada = bob.record.getRecord('person/Ada/Lovelace')
    await within(ada.whenReady(), 'ada ready')
    await within(ada.delete(), 'delete ada')
    const alan = bob.record.getRecord('person/Alan/Turing')
    await within(alan.whenReady(), 'alan ready')
    assertEqual(await refusal(alan.delete(), 'delete alan'), 'MESSAGE_DENIED', 'delete alan')
    assertEqual(await within(bob.record.has('person/Ada/Lovelace'), 'has ada'), false, 'ada deleted')
    assertEqual(await within(bob.record.has('person/Alan/Turing'), 'has alan'), true, 'alan kept')
  },
  async 'events' () {
    // The official client hands an event it emits to its own subscribers itself: who hears is checked on a third client.
    const ana = await login('ana')
    const bob = await login('bob')
    const cy = await login('cy')
    const received = []
    cy.event.subscribe('admin-only', data => received.push(data))
    await sleep(200)
    bob.event.emit('admin-only', 'from bob')
    await errorEvent(bob, 'MESSAGE_DENIED', 'bob publishes admin-only')
    ana.event.emit('admin-only', 'from ana')
    await within((async () => { while (received.length === 0) await sleep(20) })(), 'cy hears ana')
    await sleep(200)
    assertEqual(received, ['from ana'], 'what cy heard')
    ana.event.subscribe('closed/x', () => fail('ana hears closed/x'))
    await errorEvent(ana, 'MESSAGE_DENIED', 'ana subscribes closed/x')
    const heard = []
    bob.event.subscribe('ana-to-bob/1', data => heard.push(data))
    cy.event.subscribe('ana-to-bob/1', () => fail('cy hears ana-to-bob/1'))
    await errorEvent(cy, 'MESSAGE_DENIED', 'cy subscribes ana-to-bob/1')
    await sleep(200)
    cy.event.emit('ana-to-bob/1', 'hi from cy')
    ana.event.emit('ana-to-bob/1', 'hi bob')
    await within((async () => { while (heard.length === 0) await sleep(20) })(), 'bob hears ana-to-bob')
    await sleep(200)
    assertEqual(heard, ['hi bob'], 'ana-to-bob')
    const before = ana.errors.filter(e => e.event === 'MESSAGE_DENIED').length
    ana.event.emit('topic/coffee', 1)
    ana.event.emit('city/berlin', { address: { city: 'Paris' } })
    ana.event.emit('big-number', 3)
    await within((async () => { while (ana.errors.filter(e => e.event === 'MESSAGE_DENIED').length < before + 3) await sleep(20) })(), 'three more denials')
  },
  async 'rpc' () {
    const ana = await login('ana')
    const bob = await login('bob')
    bob.rpc.provide('ana-provides-bob-requests', (data, response) => response.send('from bob'))
    await errorEvent(bob, 'MESSAGE_DENIED', 'bob provides')
    ana.rpc.provide('ana-provides-bob-requests', (data, response) => response.send(data * 2))
    await sleep(200)
    assertEqual(await within(bob.rpc.make('ana-provides-bob-requests', 21), 'bob requests'), 42, 'answer')
    assertEqual(await refusal(ana.rpc.make('ana-provides-bob-requests', 21), 'ana requests'), 'MESSAGE_DENIED', 'ana requests')
    ana.rpc.provide('needs-full-name', (data, response) => response.send(`${data.first} ${data.last}`))
    await sleep(200)
    assertEqual(await within(bob.rpc.make('needs-full-name', { first: 'Ada', last: 'Lovelace' }), 'full name'), 'Ada Lovelace', 'full name')
    assertEqual(await refusal(bob.rpc.make('needs-full-name', { first: 'Ada' }), 'half a name'), 'MESSAGE_DENIED', 'half a name')
  },
  async 'presence' () {
    const ana = await login('ana')
    const bob = await login('bob')
    const online = await within(bob.presence.getAll(), 'bob asks who is online')
    assertEqual(online.includes('ana'), true, 'bob sees ana')
    assertEqual(await refusal(ana.presence.getAll(), 'ana asks'), 'MESSAGE_DENIED', 'ana asks who is online')
  },
  async 'rule-error' () {
    const ana = await login('ana')
    const bob = await login('bob')
    for (const r of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) assertEqual(await setData(ana, r, { x: 'y' }), null, 'setup ' + r)
    assertEqual(await refusal(bob.record.snapshot('loops/1'), 'a rule past its limits'), 'MESSAGE_PERMISSION_ERROR', 'loops')
    assertEqual(await setData(bob, 'still/works', { ok: true }), null, 'the connection goes on')
    assertEqual(await within(ana.record.snapshot('still/works'), 'others go on'), { ok: true }, 'others')
  },
}

const run = scenarios[scenario]
if (!run) { console.error('unknown scenario ' + scenario); process.exit(2) }
const started = Date.now()
run().then(
  () => { for (const c of clients) c.close(); console.log(`OK ${scenario} in ${Date.now() - started} ms`); process.exit(0) },
  error => { for (const c of clients) c.close(); console.error('FAILED ' + scenario + ': ' + (error && error.stack || error)); process.exit(1) })
