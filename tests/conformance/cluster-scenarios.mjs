// deepstream's own multi-server end-to-end scenarios (the features of deepstream.io-e2e for events, records, RPCs,
// presence and listening, and for servers that go down and come back), restated for @deepstream/client 7.0.5 against
// the three nodes of one StateMesh cluster. Each scenario throws on any deviation.
// usage: node cluster-scenarios.mjs <node1-url>,<node2-url>,<node3-url> <scenario>
// Clients sit on named nodes, where deepstream's features put them: "server 2" there is node 2 here (the second URL).
// A scenario in which nodes go down or come back asks whoever runs it: it writes "@@ down <n>" or "@@ up <n>" (n a
// node number, or "all") on stdout and goes on once "@@ done" arrives on stdin ("@@ failed <why>" ends it).
import deepstreamModule from '@deepstream/client'
import { createInterface } from 'node:readline'
import { fail, assertEqual, within as withinMs, sleep } from './assertions.mjs'

const { DeepstreamClient } = deepstreamModule
const [urlList, scenario] = process.argv.slice(2)
const urls = urlList.split(',')
const TIMEOUT = 5000
// A node that goes down is started again by the test; that, and its clients finding it, take longer than a step.
const RESTART_TIMEOUT = 30000
// Only to show that something did NOT happen: the time it would have taken to arrive.
const QUIET = 300
const OPTIONS = {
  subscriptionInterval: 20,
  // A discarded record is unsubscribed after this long (5 s by default), longer than a step waits for its effect.
  recordDiscardTimeout: 20,
  // Try again every 250 ms, for 30 s, to reach a node that went down (deepstream's e2e clients retry quickly too).
  reconnectIntervalIncrement: 250,
  maxReconnectInterval: 250,
  maxReconnectAttempts: 120,
  // What a client sends while its node is down is kept until the node is back.
  offlineBufferTimeout: RESTART_TIMEOUT,
}

// Names of this run only, so that nothing another run left behind (a user not yet gone, a record) is seen here.
const RUN = Date.now().toString(36) + Math.random().toString(36).slice(2, 6)
const scoped = name => `${RUN}/${name}`
const userOf = label => label === 'OPEN' ? 'OPEN' : `${label}.${RUN}`
const labelsOf = users => users.filter(u => u.endsWith('.' + RUN)).map(u => u.slice(0, -RUN.length - 1)).sort()

const within = (promise, what, ms = TIMEOUT) => withinMs(promise, what, ms)
/**
 * Checks `condition` (which may ask the cluster: async) until it holds; `what`, or what it returns (the state at the
 * time of failure), names it.
 */
async function until (condition, what, ms = TIMEOUT, every = 20) {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) fail(`timed out: ${typeof what === 'function' ? what() : what}`)
    await sleep(every)
  }
}

// ---- the cluster: nodes go down and come back on request -------------------------------------------------------

const replies = []; const waiting = []
createInterface({ input: process.stdin }).on('line', line => {
  if (!line.startsWith('@@ ')) return
  if (waiting.length > 0) waiting.shift()(line); else replies.push(line)
})
async function ask (step, node) {
  console.log(`@@ ${step} ${node}`)
  const reply = await within(new Promise(resolve => replies.length > 0 ? resolve(replies.shift()) : waiting.push(resolve)), `node ${node} ${step}`, RESTART_TIMEOUT)
  if (reply !== '@@ done') fail(`node ${node} ${step}: ${reply}`)
}
/** Node n (or 'all') goes down: stopped or killed, as the test that runs the scenario chose. */
const down = node => ask('down', node)
/** Node n (or 'all') starts again on the same port. */
const up = node => ask('up', node)

// ---- clients ------------------------------------------------------------------------------------------------------

const clients = []
/** Client `label` logs into node `node` with `authData` (by default as user label.RUN; OPEN logs in anonymously). */
async function login (label, node, authData) {
  const c = new DeepstreamClient(urls[node - 1], OPTIONS)
  Object.assign(c, { label, node, errors: [], states: [], clientDataChanges: [], refusals: [], heard: {}, probed: new Set(), calls: {}, told: [] })
  c.on('clientDataChanged', data => c.clientDataChanges.push(data))
  c.on('reauthenticationFailure', reason => c.refusals.push(reason))
  c.on('error', (error, event) => {
    c.errors.push(event)
    // A node going down is expected to be seen; anything else is worth a line.
    if (event !== 'CONNECTION_ERROR' && event !== 'IS_CLOSED' && !c.closed) console.error(`client ${label} error`, event, JSON.stringify(error))
  })
  c.on('connectionStateChanged', state => c.states.push(state))
  clients.push(c)
  c.clientData = await within(c.login(authData ?? (label === 'OPEN' ? {} : { username: userOf(label) })), `${label} logs into node ${node}`)
  return c
}
function logout (...cs) { for (const c of cs) { c.closed = true; c.close() } }
function closeAll () { logout(...clients.filter(c => !c.closed)) }
/** deepstream's "client X receives at least one CONNECTION error", then "... and is back": the client reconnected. */
async function reconnected (...cs) {
  await until(() => cs.every(c => c.errors.includes('CONNECTION_ERROR') && c.states.includes('RECONNECTING') && c.getConnectionState() === 'OPEN'),
    `${cs.map(c => c.label)} reconnect`, RESTART_TIMEOUT, 50)
}
async function disconnected (...cs) {
  await until(() => cs.every(c => c.getConnectionState() === 'RECONNECTING'), `${cs.map(c => c.label)} notice their node is gone`)
}

/** The Background of most of deepstream's features: clients A and B log into node 1, C into node 2, D into node 3. */
const background = () => Promise.all([login('A', 1), login('B', 1), login('C', 2), login('D', 3)])

// ---- events -------------------------------------------------------------------------------------------------------

const PROBE = '__probe'
function subscribeEvent (name, ...cs) {
  for (const c of cs) {
    c.heard[name] = []
    c.event.subscribe(name, data => { if (data && data[PROBE]) c.probed.add(name); else c.heard[name].push(data) })
  }
}
/**
 * The official client gives no promise for a subscription. It is in place, on its node and across the cluster, once
 * an event emitted after it arrives: `publisher` emits probes (which the scenarios' callbacks leave out) until every
 * one of `subscribers` has heard one.
 */
async function live (name, publisher, subscribers) {
  for (const c of subscribers) c.probed.delete(name)
  let n = 0
  await until(() => {
    if (subscribers.every(c => c.probed.has(name))) return true
    publisher.event.emit(name, { [PROBE]: ++n })
    return false
  }, `subscriptions to ${name} of ${subscribers.map(c => c.label)} in place`, TIMEOUT, 50)
}
async function hear (name, expected, ...cs) {
  await until(() => cs.every(c => c.heard[name].length >= expected.length), `${cs.map(c => c.label)} hear ${name} ${JSON.stringify(expected)}`)
  for (const c of cs) assertEqual(c.heard[name], expected, `${c.label} heard ${name}`)
}

// ---- records ------------------------------------------------------------------------------------------------------

async function getRecords (name, ...cs) {
  const records = cs.map(c => c.record.getRecord(name))
  await within(Promise.all(records.map(r => r.whenReady())), `${cs.map(c => c.label)} get ${name}`)
  return records
}
/** deepstream's "all clients have record X with path P and data D": every copy gets there. */
async function haveRecord (records, path, value, ms = TIMEOUT) {
  const get = r => path === null ? r.get() : r.get(path)
  await until(() => records.every(r => JSON.stringify(get(r)) === JSON.stringify(value)), `records have ${path} = ${JSON.stringify(value)}`, ms)
}
/**
 * Waits until the client's copies have subscribed again after a reconnect. The client marks every record dirty when
 * its connection drops; a write made before the copy has compared versions with its node again goes out with the old
 * version, is turned down (VERSION_EXISTS) and lost to "remote wins". (Only `recordState` shows it: read, not changed.)
 */
async function resubscribed (records) {
  await until(() => records.every(r => r.record.recordState === 'READY'), 'the records subscribe again')
}
/** deepstream's record Background: A and B on node 1, C on node 2, D on node 3; all get "record"; A sets a name. */
async function recordBackground () {
  const [A, B, C, D] = await background()
  const name = scoped('record')
  const records = await getRecords(name, A, B, C, D)
  records[0].set({ user: { firstname: 'John' } })
  await haveRecord(records, 'user.firstname', 'John')
  return { A, B, C, D, name, records }
}

// ---- RPCs ---------------------------------------------------------------------------------------------------------

const readyRpc = c => scoped(`ready-${c.label}`)
/** c provides `name`, counting the calls it gets; then `ready-<label>`, by which callers see it is known everywhere. */
function provide (name, handler, ...cs) {
  for (const c of cs) {
    c.calls[name] = []
    c.rpc.provide(name, (data, response) => { c.calls[name].push(data); handler(data, response, c) })
    if (!c.providesReady) c.rpc.provide(readyRpc(c), (data, response) => response.send('ready'))
    c.providesReady = true
  }
}
/** The official client gives no promise for provide(): every caller reaches every provider's ready RPC first. */
async function provided (providers, callers) {
  for (const p of providers) {
    for (const caller of callers) {
      await until(async () => (await make(caller, readyRpc(p), null)).result === 'ready', `${caller.label} reaches the provider ${p.label}`, TIMEOUT, 50)
    }
  }
}
/** c no longer provides `name`; then callers see NO_RPC_PROVIDER for its ready RPC, which it gave up after. */
async function unprovide (name, providers, callers) {
  for (const p of providers) { p.rpc.unprovide(name); p.rpc.unprovide(readyRpc(p)); p.providesReady = false }
  for (const p of providers) {
    for (const caller of callers) {
      await until(async () => (await make(caller, readyRpc(p), null)).error === 'NO_RPC_PROVIDER', `${caller.label} sees ${p.label} stop providing`, TIMEOUT, 50)
    }
  }
}
async function make (c, name, data) {
  try { return { result: await within(c.rpc.make(name, data), `${c.label} calls ${name}`) } } catch (error) { return { error } }
}
const addTwo = (data, response) => response.send(data.numA + data.numB)
const alwaysReject = (data, response) => response.reject()
function callCounts (name, cs) { return Object.fromEntries(cs.map(c => [c.label, (c.calls[name] ?? []).length])) }

// ---- presence -----------------------------------------------------------------------------------------------------

/** c hears every login and logout (or only those of `labels`), as [label, online]; OPEN and other runs left out. */
function watchPresence (c, labels) {
  const seen = (user, online) => { const [label] = labelsOf([user]); if (label) c.told.push([label, online]) }
  if (labels) for (const label of labels) c.presence.subscribe(userOf(label), seen)
  else c.presence.subscribe(seen)
}
function unwatchPresence (c, labels) {
  if (labels) for (const label of labels) c.presence.unsubscribe(userOf(label))
  else c.presence.unsubscribe()
}
/**
 * The official client sends presence subscriptions in batches and gives no promise for them. Once a batch has gone
 * (a few subscription intervals), an answer to a query sent after it shows that its node has it.
 */
async function presenceInPlace (...cs) {
  await sleep(OPTIONS.subscriptionInterval * 5)
  await within(Promise.all(cs.map(c => c.presence.getAll())), 'presence queries')
}
/** c is told `expected` (logins and logouts of the users `among`, when given; every user of this run otherwise). */
async function notified (c, expected, among) {
  const sorted = list => [...list].sort((a, b) => JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)
  const told = () => c.told.filter(([label]) => !among || among.includes(label))
  await until(() => told().length >= expected.length, () => `${c.label} is told ${JSON.stringify(expected)} (so far ${JSON.stringify(told())})`)
  assertEqual(sorted(told()), sorted(expected), `${c.label} is told`)
  c.told.length = 0
}
async function notNotified (cs, among) {
  await sleep(QUIET)
  for (const c of cs) assertEqual(c.told.filter(([label]) => !among || among.includes(label)), [], `${c.label} is told nothing`)
}
/**
 * Every one of `cs` sees all of `labels` but itself online: their logins have reached the watchers' nodes, so a
 * subscription made now is not told of them late.
 */
async function seenOnline (cs, labels) {
  for (const c of cs) await online(c, labels.filter(label => label !== c.label))
}
/** c asks who is online (presence getAll) until the users of this run it is told of are `expectedLabels`. */
async function online (c, expectedLabels) {
  let users
  await until(async () => {
    users = labelsOf(await within(c.presence.getAll(), `${c.label} asks who is online`))
    return JSON.stringify(users) === JSON.stringify([...expectedLabels].sort())
  }, () => `${c.label} is told ${JSON.stringify(expectedLabels)} are online, not ${JSON.stringify(users)}`, TIMEOUT, 50)
}

// ---- listening ----------------------------------------------------------------------------------------------------

// Listeners here answer at once: even four offers in turn come well within this.
const OFFER_TIMEOUT = 2000
const offers = [] // [label, name] in the order the listeners were offered names
const removals = [] // [label, name]: a provider was told the name has no subscriber left
/** c listens to `pattern` (scoped to this run) on events or records, and accepts the names `accepts` says. */
function listen (c, type, pattern, accepts) {
  const scopedPattern = `^${RUN}/${pattern}`
  c[type].listen(scopedPattern, (name, response) => {
    offers.push([c.label, name])
    if (accepts(name)) {
      response.accept()
      response.onStop(() => removals.push([c.label, name]))
    } else {
      response.reject()
    }
  })
  return scopedPattern
}
const offersOf = (label, name) => offers.filter(o => o[0] === label && o[1] === name).length
const removalsOf = (label, name) => removals.filter(o => o[0] === label && o[1] === name).length
async function offered (label, name, count) {
  await until(() => offersOf(label, name) >= count, () => `${label} is offered ${name} ${count} time(s) (offers: ${JSON.stringify(offers)})`, OFFER_TIMEOUT)
  assertEqual(offersOf(label, name), count, `offers of ${name} to ${label}`)
}
/**
 * A name is offered to one listener at a time, each at most once, until one accepts; after that nobody else. In
 * which order is the cluster's choice (deepstream shuffles listeners by default): `rejecters` may each be asked
 * before `accepter`, which must be asked exactly once.
 */
async function providedBy (name, accepter, rejecters = [], others = []) {
  await offered(accepter, name, 1)
  await sleep(QUIET)
  const order = offers.filter(o => o[1] === name).map(o => o[0])
  if (order[order.length - 1] !== accepter) fail(`${name} was offered after ${accepter} accepted it: ${JSON.stringify(order)}`)
  for (const label of rejecters) if (offersOf(label, name) > 1) fail(`${name} was offered to ${label} twice: ${JSON.stringify(order)}`)
  for (const label of others) if (offersOf(label, name) > 0) fail(`${name} was offered to ${label}, which would have accepted too: ${JSON.stringify(order)}`)
  return order
}
/**
 * deepstream's listening Background: publishers A, B on node 1, C on 2, D on 3; subscribers S1, S2, S3 on nodes 1, 2,
 * 3. Only the `labels` a scenario uses log in (the others would only look on).
 */
async function listenBackground (...labels) {
  const nodes = { A: 1, B: 1, C: 2, D: 3, S1: 1, S2: 2, S3: 3 }
  const cs = await Promise.all(labels.map(label => login(label, nodes[label])))
  return Object.fromEntries(cs.map(c => [c.label, c]))
}
const yes = () => true
const no = () => false

// ---- the scenarios ------------------------------------------------------------------------------------------------

const scenarios = {
  // events/events.feature
  async 'events-all-receive' () {
    const [A, B, C, D] = await background()
    const name = scoped('event1')
    subscribeEvent(name, A, B, C, D)
    await live(name, A, [A, B, C, D])
    A.event.emit(name, 'someData')
    await hear(name, ['someData'], A, B, C, D)
  },
  async 'events-unsubscribe' () {
    const [A, B] = await background()
    const name = scoped('event3')
    subscribeEvent(name, A, B)
    await live(name, B, [A, B])
    B.event.emit(name, { an: 'object' })
    await hear(name, [{ an: 'object' }], A, B)
    A.event.unsubscribe(name)
    A.event.emit(name, 'someOtherData')
    await hear(name, [{ an: 'object' }, 'someOtherData'], B)
    await sleep(QUIET)
    assertEqual(A.heard[name], [{ an: 'object' }], 'A, unsubscribed, hears nothing more')
  },
  async 'events-every-publisher' () {
    const all = await background()
    const name = scoped('event4')
    subscribeEvent(name, ...all)
    await live(name, all[0], all)
    const sent = []
    for (const [i, publisher] of all.entries()) {
      publisher.event.emit(name, 100 + i)
      sent.push(100 + i)
      await hear(name, sent, ...all)
    }
  },

  // records/record.feature
  async 'records-local-copy' () {
    const { records } = await recordBackground()
    await haveRecord(records, 'user.firstname', 'John')
  },
  async 'records-set-path' () {
    const { records } = await recordBackground()
    records[0].set('user.firstname', 'Bob')
    await haveRecord(records, 'user.firstname', 'Bob')
  },
  async 'records-subscribe-full' () {
    const { records } = await recordBackground()
    const updates = records.map(() => [])
    records.forEach((r, i) => r.subscribe(data => updates[i].push(data), true))
    await until(() => updates.every(u => u.length === 1), 'the immediate update')
    for (const u of updates) assertEqual(u, [{ user: { firstname: 'John' } }], 'immediate update')
    records[0].set('user.firstname', 'Dave')
    await until(() => updates.every(u => u.length === 2), 'the update')
    for (const u of updates) assertEqual(u[1], { user: { firstname: 'Dave' } }, 'update')
  },
  async 'records-subscribe-path' () {
    const { records } = await recordBackground()
    const updates = records.map(() => [])
    records.forEach((r, i) => r.subscribe('user.firstname', value => updates[i].push(value), true))
    await until(() => updates.every(u => u.length === 1), 'the immediate update')
    records[0].set('user.firstname', 'Dave')
    await until(() => updates.every(u => u.length === 2), 'the update')
    for (const u of updates) assertEqual(u, ['John', 'Dave'], 'path updates')
  },
  async 'records-unsubscribe' () {
    const { records } = await recordBackground()
    const updates = records.map(() => [])
    const callbacks = records.map((r, i) => value => updates[i].push(value))
    records.forEach((r, i) => r.subscribe('pets[2]', callbacks[i]))
    records[0].set('pets[2]', 'Samoyed')
    await until(() => updates.every(u => u.length === 1), 'Samoyed everywhere')
    for (const u of updates) assertEqual(u, ['Samoyed'], 'pets[2]')
    records.forEach((r, i) => r.unsubscribe('pets[2]', callbacks[i]))
    records[1].set('pets[2]', 'Guineapig')
    await haveRecord(records, 'pets[2]', 'Guineapig')
    await sleep(QUIET)
    for (const u of updates) assertEqual(u, ['Samoyed'], 'no update after unsubscribing')
  },
  async 'records-delete' () {
    const { records } = await recordBackground()
    const deleted = records.map(r => new Promise(resolve => r.on('delete', resolve)))
    await within(records[0].delete(), 'A deletes')
    await within(Promise.all(deleted.slice(1)), 'B, C, D are told of the delete')
  },
  async 'records-delete-recreate' () {
    const { A, B, C, D, name, records } = await recordBackground()
    const deleted = records.slice(1).map(r => new Promise(resolve => r.on('delete', resolve)))
    await within(records[0].delete(), 'A deletes')
    await within(Promise.all(deleted), 'the delete reaches everyone')
    const again = await getRecords(name, A, B, C, D)
    await haveRecord(again, null, {})
  },
  // records/record-head.feature, record-has.feature, record-snapshot.feature: A on node 1, B on node 2
  async 'records-remote-head' () {
    const [A, B] = await Promise.all([login('A', 1), login('B', 2)])
    const name = scoped('incrementVersion')
    const [record] = await getRecords(name, A)
    assertEqual(await within(B.record.head(name), 'head'), 0, 'version at B before a write')
    await within(record.setWithAck({ user: { firstname: 'John' } }), 'A sets')
    assertEqual(await within(B.record.head(name), 'head'), 1, 'version at B after a write')
    assertEqual(await within(B.record.head(scoped('nonExistantRecord')), 'head missing'), -1, 'version of a missing record')
  },
  async 'records-remote-has' () {
    const [A, B] = await Promise.all([login('A', 1), login('B', 2)])
    const name = scoped('hasRecord')
    await getRecords(name, A)
    assertEqual(await within(B.record.has(name), 'has'), true, 'B has')
    assertEqual(await within(A.record.has(scoped('nonExistantRecord')), 'has missing'), false, 'missing')
  },
  async 'records-remote-snapshot' () {
    const [A, B] = await Promise.all([login('A', 1), login('B', 2)])
    const name = scoped('snapshotRecord')
    const [record] = await getRecords(name, A)
    await within(record.setWithAck({ key: 'value' }), 'A sets')
    assertEqual(await within(B.record.snapshot(name), 'snapshot'), { key: 'value' }, 'B snapshot')
    let error
    try { await within(B.record.snapshot(scoped('nonExistantRecord')), 'snapshot missing') } catch (e) { error = e }
    assertEqual(error, 'RECORD_NOT_FOUND', 'snapshot of a missing record')
  },
  // records/record-setData.feature
  async 'records-set-data-unsubscribed' () {
    const [A, B, C, D] = await background()
    const name = scoped('set-data-record')
    const records = await getRecords(name, B, C, D)
    await within(A.record.setDataWithAck(name, { user: { firstname: 'Alex' } }), 'A sets without subscribing')
    await haveRecord(records, 'user.firstname', 'Alex')
    await within(A.record.setDataWithAck(name, 'user.firstname', 'John'), 'A sets a path without subscribing')
    await haveRecord(records, 'user.firstname', 'John')
    await within(A.record.setDataWithAck(name, 'user.firstname', undefined), 'A erases a path without subscribing')
    await haveRecord(records, null, { user: {} })
  },
  async 'records-set-data-creates' () {
    const [A, B, C, D] = await background()
    const name = scoped('not-yet-existant')
    await within(A.record.setDataWithAck(name, { user: { firstname: 'Alex' } }), 'A creates by setting')
    await haveRecord(await getRecords(name, B, C, D), 'user.firstname', 'Alex')
  },
  // records/record-writeAcknowledgement.feature
  async 'records-write-ack' () {
    const [A, B, C, D] = await background()
    const records = await getRecords(scoped('writeRecord'), A, B, C, D)
    await within(records[0].setWithAck('user.firstname', 'Bob'), 'A is told Bob was set')
    await within(records[0].setWithAck('user.firstname', 'Alex'), 'A is told Alex was set')
    await haveRecord(records, 'user.firstname', 'Alex')
    await within(records[2].setWithAck('user.firstname', 'Charlie'), 'C is told Charlie was set')
    await haveRecord(records, 'user.firstname', 'Charlie')
  },
  // Not one of deepstream's scenarios (deepstream does not promise it across servers): a write from every node at
  // the same version; the shared store accepts exactly one, and every copy ends with it.
  async 'records-concurrent-writes' () {
    const { records } = await recordBackground()
    const version = records[0].version
    records[0].set({ by: 'A' }); records[2].set({ by: 'C' }); records[3].set({ by: 'D' })
    await until(() => records.every(r => r.version === records[0].version && JSON.stringify(r.get()) === JSON.stringify(records[0].get())) &&
      records.every(r => r.version > version), 'every copy converges')
    const winner = records[0].get().by
    if (!['A', 'C', 'D'].includes(winner)) fail(`the record holds ${JSON.stringify(records[0].get())}`)
    assertEqual(records[0].version, version + 1, 'one write won, the others were turned down')
  },
  // records/list.feature
  async 'lists-entries' () {
    const [A, B, C, D] = await background()
    const name = scoped('listA')
    const lists = [A, B, C, D].map(c => c.record.getList(name))
    await within(Promise.all(lists.map(l => l.whenReady())), 'lists ready')
    lists[0].setEntries(['Carrot', 'Tomato'])
    await until(() => lists.every(l => JSON.stringify(l.getEntries()) === '["Carrot","Tomato"]'), 'entries everywhere')
    const removed = lists.map(() => [])
    lists.forEach((l, i) => l.on('entry-removed', entry => removed[i].push(entry)))
    lists[0].removeEntry('Carrot')
    await until(() => lists.every(l => JSON.stringify(l.getEntries()) === '["Tomato"]'), 'the removal everywhere')
    await until(() => removed.slice(1).every(r => r.length === 1), 'entry-removed everywhere')
    for (const r of removed.slice(1)) assertEqual(r, ['Carrot'], 'entry-removed')
  },

  // rpcs/rpcs.feature
  async 'rpc-call-from-every-server' () {
    const [A, B, C, D] = await background()
    const name = scoped('addTwo')
    provide(name, addTwo, A)
    await provided([A], [B, C, D])
    assertEqual(await make(A, name, { numA: 1, numB: 2 }), { result: 3 }, 'A calls')
    assertEqual(await make(B, name, { numA: 3, numB: 7 }), { result: 10 }, 'B calls')
    assertEqual(await make(C, name, { numA: 14, numB: 35 }), { result: 49 }, 'C calls from node 2')
    assertEqual(await make(D, name, { numA: 'red', numB: 'rum' }), { result: 'redrum' }, 'D calls from node 3')
    assertEqual(A.calls[name].length, 4, 'A was called once per call')
  },
  async 'rpc-reroute-after-reject' () {
    const [A, B, C] = await background()
    const name = scoped('rejectOnce')
    let rejected = false
    provide(name, (data, response) => { if (rejected) response.send('ok'); else { rejected = true; response.reject() } }, A, B)
    await provided([A, B], [C])
    assertEqual(await make(C, name, { numA: 1, numB: 2 }), { result: 'ok' }, 'C calls from node 2')
    assertEqual(callCounts(name, [A, B]), { A: 1, B: 1 }, 'each provider was asked once')
  },
  async 'rpc-only-provider-rejects' () {
    const [A, B] = await background()
    const name = scoped('alwaysReject')
    provide(name, alwaysReject, A)
    await provided([A], [B])
    assertEqual(await make(B, name, { bill: 1, ben: 2 }), { error: 'NO_RPC_PROVIDER' }, 'B calls')
    assertEqual(callCounts(name, [A]), { A: 1 }, 'A was asked once')
  },
  async 'rpc-all-providers-reject' () {
    const all = await background()
    const name = scoped('alwaysReject')
    provide(name, alwaysReject, ...all)
    await provided(all, [all[0]])
    assertEqual(await make(all[0], name, {}), { error: 'NO_RPC_PROVIDER' }, 'A calls')
    assertEqual(callCounts(name, all), { A: 1, B: 1, C: 1, D: 1 }, 'every provider, on every node, was asked once')
  },
  async 'rpc-never-responds' () {
    const [A, B] = await background()
    const name = scoped('neverRespond')
    provide(name, () => {}, A)
    await provided([A], [B])
    // The node's response timeout is set short for these scenarios (deepstream's e2e servers do the same).
    assertEqual(await make(B, name, {}), { error: 'RESPONSE_TIMEOUT' }, 'B calls')
    assertEqual(callCounts(name, [A]), { A: 1 }, 'A was asked once')
  },
  async 'rpc-local-provider-first' () {
    const [A, B, C, D] = await background()
    const name = scoped('addTwo')
    provide(name, addTwo, B, C, D)
    await provided([B, C, D], [A])
    // deepstream asserts it for one call; ten make a random choice among all three visible.
    for (let i = 0; i < 10; i++) assertEqual(await make(A, name, { numA: 15, numB: i }), { result: 15 + i }, 'A calls')
    assertEqual(callCounts(name, [B, C, D]), { B: 10, C: 0, D: 0 }, 'only the provider on the caller\'s node was asked')
  },
  async 'rpc-local-rejects-remote-answers' () {
    const [A, B, C] = await background()
    const name = scoped('clientBRejects')
    provide(name, (data, response, c) => c === B ? response.reject() : response.send(data.root * data.root), B, C)
    await provided([B, C], [A])
    assertEqual(await make(A, name, { root: 3 }), { result: 9 }, 'A calls')
    assertEqual(callCounts(name, [B, C]), { B: 1, C: 1 }, 'B, on A\'s node, first; then C on node 2')
  },
  async 'rpc-provider-unprovides' () {
    const [A, , , D] = await background()
    const name = scoped('addTwo')
    provide(name, addTwo, A)
    await provided([A], [D])
    assertEqual(await make(D, name, { numA: 93, numB: 7 }), { result: 100 }, 'D calls from node 3')
    await unprovide(name, [A], [D])
    assertEqual(await make(D, name, { numA: 93, numB: 7 }), { error: 'NO_RPC_PROVIDER' }, 'D calls after A stopped providing')
    assertEqual(callCounts(name, [A]), { A: 1 }, 'A was not asked after it stopped providing')
  },

  // presence/presence-global.feature
  async 'presence-login-seen-on-every-server' () {
    const [A, B, C] = await Promise.all([login('A', 1), login('B', 1), login('C', 2)])
    await seenOnline([A, C], ['A', 'B', 'C'])
    for (const c of [A, B, C]) watchPresence(c)
    await presenceInPlace(A, B, C)
    await login('D', 1)
    for (const c of [A, B, C]) await notified(c, [['D', true]])
  },
  async 'presence-logins-from-other-servers' () {
    const A = await login('A', 1)
    watchPresence(A)
    await presenceInPlace(A)
    await Promise.all([login('B', 1), login('C', 2), login('OPEN', 2)])
    await notified(A, [['B', true], ['C', true]])
    await notNotified([A])
  },
  async 'presence-logout-seen-on-every-server' () {
    const [A, B, C, D] = await Promise.all([login('A', 1), login('B', 1), login('C', 2), login('D', 2)])
    await seenOnline([A, C], ['A', 'B', 'C', 'D'])
    for (const c of [A, B, C]) watchPresence(c)
    await presenceInPlace(A, B, C)
    logout(D)
    for (const c of [A, B, C]) await notified(c, [['D', false]])
  },
  async 'presence-logouts-from-other-servers' () {
    const A = await login('A', 1)
    watchPresence(A)
    const [B, C, OPEN] = await Promise.all([login('B', 1), login('C', 2), login('OPEN', 2)])
    await presenceInPlace(A)
    await notified(A, [['B', true], ['C', true]])
    logout(B, C, OPEN)
    await notified(A, [['B', false], ['C', false]])
    await notNotified([A])
  },
  // presence/presence-individual.feature
  async 'presence-user-login-seen-on-every-server' () {
    const [A, B, C] = await Promise.all([login('A', 1), login('B', 1), login('C', 2)])
    for (const c of [A, B, C]) watchPresence(c, ['D'])
    await presenceInPlace(A, B, C)
    await login('D', 1)
    for (const c of [A, B, C]) await notified(c, [['D', true]])
  },
  async 'presence-user-logins-from-other-servers' () {
    const A = await login('A', 1)
    watchPresence(A, ['C'])
    await presenceInPlace(A)
    await Promise.all([login('B', 1), login('C', 2), login('OPEN', 2)])
    await notified(A, [['C', true]])
    await notNotified([A])
  },
  async 'presence-user-logout-seen-on-every-server' () {
    const [A, B, C, D] = await Promise.all([login('A', 1), login('B', 1), login('C', 2), login('D', 2)])
    await seenOnline([A, C], ['A', 'B', 'C', 'D'])
    for (const c of [A, B, C]) watchPresence(c, ['D'])
    await presenceInPlace(A, B, C)
    logout(D)
    for (const c of [A, B, C]) await notified(c, [['D', false]])
  },
  // presence/presence-query.feature, presence-query-individual.feature
  async 'presence-query-all' () {
    const A = await login('A', 1)
    await online(A, [])
    const [B, C] = await Promise.all([login('B', 1), login('C', 2)])
    await online(A, ['B', 'C'])
    logout(B, C)
    await online(A, [])
  },
  async 'presence-query-users' () {
    const A = await login('A', 1)
    const ask = async expected => {
      let got
      await until(async () => {
        const answer = await within(A.presence.getAll([userOf('B'), userOf('C')]), 'A asks for B and C')
        got = { B: answer[userOf('B')], C: answer[userOf('C')] }
        return JSON.stringify(got) === JSON.stringify(expected)
      }, () => `A is told ${JSON.stringify(expected)} of B and C, not ${JSON.stringify(got)}`, TIMEOUT, 50)
    }
    await ask({ B: false, C: false })
    const [B, C] = await Promise.all([login('B', 1), login('C', 2)])
    await ask({ B: true, C: true })
    logout(B, C)
    await ask({ B: false, C: false })
  },

  // events/events-listen.feature
  async 'listen-accepts-two-names' () {
    const { A, S1 } = await listenBackground('A', 'S1')
    listen(A, 'event', 'event/[a-z0-9]', yes)
    for (const n of ['event/1', 'event/2', 'weather']) S1.event.subscribe(scoped(n), () => {})
    await offered('A', scoped('event/1'), 1)
    await offered('A', scoped('event/2'), 1)
    await sleep(QUIET)
    assertEqual(offersOf('A', scoped('weather')), 0, 'A is not offered weather')
  },
  async 'listen-unlisten-and-listen-again' () {
    const { A, S1 } = await listenBackground('A', 'S1')
    const pattern = listen(A, 'event', 'event/[a-z0-9]', yes)
    S1.event.subscribe(scoped('event/1'), () => {})
    await offered('A', scoped('event/1'), 1)
    A.event.unlisten(pattern)
    listen(A, 'event', 'event/[a-z0-9]', yes)
    await offered('A', scoped('event/1'), 2)
  },
  async 'listen-first-rejects-second-accepts' () {
    const { A, B, S1 } = await listenBackground('A', 'B', 'S1')
    listen(A, 'event', 'event/[a-z0-9]', no)
    listen(B, 'event', 'event/.*', yes)
    S1.event.subscribe(scoped('event/1'), () => {})
    await providedBy(scoped('event/1'), 'B', ['A'])
  },
  async 'listen-one-provider-of-two' () {
    // deepstream's "first accepts, second gets nothing", with both willing: whichever is asked first provides.
    const { A, B, S1 } = await listenBackground('A', 'B', 'S1')
    listen(A, 'event', 'event/[a-z0-9]', yes)
    listen(B, 'event', 'event/.*', yes)
    const name = scoped('event/1')
    S1.event.subscribe(name, () => {})
    await until(() => offers.some(o => o[1] === name), 'an offer')
    const first = offers.find(o => o[1] === name)[0]
    await providedBy(name, first, [], [first === 'A' ? 'B' : 'A'])
  },
  async 'listen-publisher-on-other-server' () {
    const { A, S3 } = await listenBackground('A', 'S3')
    listen(A, 'event', 'event/[a-z0-8]', yes)
    S3.event.subscribe(scoped('event/1'), () => {})
    await offered('A', scoped('event/1'), 1)
  },
  async 'listen-three-publishers-two-reject' () {
    const { A, B, C, S1 } = await listenBackground('A', 'B', 'C', 'S1')
    listen(A, 'event', 'event/[a-z0-9]', no)
    listen(B, 'event', 'event/.*', no)
    listen(C, 'event', 'event/[0-9]', yes)
    S1.event.subscribe(scoped('event/1'), () => {})
    await providedBy(scoped('event/1'), 'C', ['A', 'B'])
  },
  async 'listen-four-publishers-three-reject' () {
    const { A, B, C, D, S1 } = await listenBackground('A', 'B', 'C', 'D', 'S1')
    listen(A, 'event', 'event/[a-z0-9]', no)
    listen(B, 'event', 'event/.*', no)
    listen(C, 'event', 'event/[0-9]', no)
    listen(D, 'event', 'event/[0-9]', yes)
    S1.event.subscribe(scoped('event/1'), () => {})
    await providedBy(scoped('event/1'), 'D', ['A', 'B', 'C'])
  },
  async 'listen-provider-unlistens-other-takes-over' () {
    const { A, D, S1 } = await listenBackground('A', 'D', 'S1')
    const patterns = { A: listen(A, 'event', 'event/[a-z0-9]', yes), D: listen(D, 'event', 'event/.*', yes) }
    const name = scoped('event/1')
    S1.event.subscribe(name, () => {})
    await until(() => offers.some(o => o[1] === name), 'an offer')
    const [first, second] = offers.find(o => o[1] === name)[0] === 'A' ? [A, D] : [D, A]
    await providedBy(name, first.label, [], [second.label])
    first.event.unlisten(patterns[first.label])
    await offered(second.label, name, 1)
  },
  async 'listen-removed-when-last-subscriber-anywhere-leaves' () {
    // The middle of deepstream's "long scenario that does lots of random stuff".
    const { C, S1, S2, S3 } = await listenBackground('C', 'S1', 'S2', 'S3')
    listen(C, 'event', 'another-event', yes)
    const name = scoped('another-event')
    S3.event.subscribe(name, () => {})
    await offered('C', name, 1)
    S2.event.subscribe(name, () => {})
    await sleep(QUIET)
    assertEqual(offersOf('C', name), 1, 'a second subscriber (on C\'s own node) brings no second offer')
    S2.event.unsubscribe(name)
    await sleep(QUIET)
    assertEqual(removalsOf('C', name), 0, 'removed while node 3 still has a subscriber')
    S3.event.unsubscribe(name)
    await until(() => removalsOf('C', name) === 1, 'C is told the last subscriber left')
    S1.event.subscribe(name, () => {})
    await offered('C', name, 2)
  },
  async 'listen-reject-passes-to-other-server' () {
    // Cross-server "first rejects, second accepts" over 20 names: a listener on the subscriber's node turns every name
    // down, one on node 2 accepts; each name ends with node 2's listener, the first one having been asked at most once.
    const { A, C, S1 } = await listenBackground('A', 'C', 'S1')
    listen(A, 'event', 'feed/.*', no)
    listen(C, 'event', 'feed/.*', yes)
    const names = Array.from({ length: 20 }, (_, i) => scoped(`feed/${i}`))
    for (const name of names) S1.event.subscribe(name, () => {})
    for (const name of names) await providedBy(name, 'C', ['A'])
    if (!names.some(name => offersOf('A', name) === 1)) fail('the listener on the subscriber\'s node was never asked first in 20 names')
  },
  async 'listen-record-provider-across-servers' () {
    // The record side of listening (deepstream's "has provider"): a provider on node 1, subscribers on nodes 2 and 3.
    const { A, S2, S3 } = await listenBackground('A', 'S2', 'S3')
    listen(A, 'record', 'quote/.*', yes)
    const name = scoped('quote/1')
    const records = await getRecords(name, S2, S3)
    await until(() => records.every(r => r.hasProvider), 'both subscribers are told the record has a provider', OFFER_TIMEOUT)
    assertEqual(offersOf('A', name), 1, 'one offer for two subscribers on two nodes')
    records[0].discard()
    await sleep(QUIET)
    assertEqual(removalsOf('A', name), 0, 'removed while node 3 still has a subscriber')
    records[1].discard()
    await until(() => removalsOf('A', name) === 1, 'A is told the last subscriber left')
  },

  // ---- servers going down and coming back ----

  // events/events-connection.feature "Server restarts"
  async 'events-server-restarts' () {
    const [A, B, C, D] = await background()
    const name = scoped('eve')
    subscribeEvent(name, A, B, C, D)
    await live(name, A, [A, B, C, D])
    A.event.emit(name, 1)
    await hear(name, [1], A, B, C, D)
    await down(1)
    await disconnected(A, B)
    A.event.emit(name, 2)
    await hear(name, [1, 2], A)
    await sleep(QUIET)
    for (const c of [B, C, D]) assertEqual(c.heard[name], [1], `${c.label} hears nothing while node 1 is down`)
    await up(1)
    await reconnected(A, B)
    // A's event, kept while its node was down, is sent once it is back. (B may miss it: it subscribes again meanwhile.)
    await hear(name, [1, 2], C, D)
    // Subscribed again: B hears events from the other nodes.
    await live(name, D, [A, B, C])
    D.event.emit(name, 3)
    await hear(name, [1, 2, 3], A, C, D)
    await until(() => B.heard[name].at(-1) === 3, 'B hears 3 after its node came back')
  },
  // events/events-connection.feature "All subscriptions should be resumed after servers restart"
  async 'events-all-servers-restart' () {
    const all = await background()
    const name = scoped('bob')
    subscribeEvent(name, ...all)
    await live(name, all[0], all)
    await down('all')
    await up('all')
    await reconnected(...all)
    await live(name, all[0], all)
    all[0].event.emit(name, 'back')
    await hear(name, ['back'], ...all)
  },
  // records/record-connection.feature "Maintains a local copy of the record"
  async 'records-local-copy-across-restart' () {
    const { A, B, C, D, records } = await recordBackground()
    records[0].set('user.firstname', 'Bob')
    await haveRecord(records, 'user.firstname', 'Bob')
    await down('all')
    await disconnected(A, B, C, D)
    await haveRecord(records, 'user.firstname', 'Bob')
    await up('all')
    await reconnected(A, B, C, D)
    await haveRecord(records, 'user.firstname', 'Bob')
    // And the copies are live again, across the nodes.
    await resubscribed(records)
    records[3].set('user.firstname', 'Ben')
    await haveRecord(records, 'user.firstname', 'Ben')
  },
  // records/record-connection.feature "Remote wins by default"
  async 'records-remote-wins' () {
    const { A, B, C, D, records } = await recordBackground()
    await down(1)
    await disconnected(A, B)
    for (const name of ['Mike', 'Mike1', 'Mike2']) records[0].set('user.firstname', name)
    assertEqual(records[0].get('user.firstname'), 'Mike2', 'A has its own changes')
    await sleep(QUIET)
    for (const r of records.slice(1)) assertEqual(r.get('user.firstname'), 'John', 'the others do not')
    await up(1)
    await reconnected(A, B)
    // What the cluster has wins over what A changed while its node was down.
    await haveRecord(records, 'user.firstname', 'John', RESTART_TIMEOUT)
    assertEqual([C, D].map(c => c.getConnectionState()), ['OPEN', 'OPEN'], 'C and D stayed connected')
  },
  // rpcs/rpc-reconnectivity.feature "Subscriptions to all users should be resumed after servers restart" and
  // "Subscriptions can be removed while server is down", over one restart: A provides two RPCs, gives one up meanwhile.
  async 'rpc-provides-across-restart' () {
    const A = await login('A', 1)
    const kept = scoped('addTwo'); const dropped = scoped('addTwoDropped')
    provide(kept, addTwo, A)
    provide(dropped, addTwo, A)
    await down('all')
    A.rpc.unprovide(dropped)
    await up('all')
    await reconnected(A)
    const [B, C, D] = await Promise.all([login('B', 1), login('C', 2), login('D', 3)])
    // A provides its ready RPC again too: once that is reached from everywhere, A's subscriptions are back.
    await provided([A], [B, C, D])
    for (const c of [B, C, D]) assertEqual(await make(c, kept, { numA: 3, numB: 7 }), { result: 10 }, `${c.label} calls ${kept}`)
    for (const c of [B, C, D]) assertEqual(await make(c, dropped, { numA: 3, numB: 7 }), { error: 'NO_RPC_PROVIDER' }, `${c.label} calls ${dropped}`)
    assertEqual(callCounts(kept, [A]), { A: 3 }, 'A was called three times')
    assertEqual(callCounts(dropped, [A]), { A: 0 }, 'A was not called for what it gave up')
  },
  // rpcs/rpc-reconnectivity.feature "Subscriptions can be added before servers are added to the cluster"
  async 'rpc-provide-before-cluster-back' () {
    await down('all')
    await up(1)
    const A = await login('A', 1)
    const name = scoped('addTwo')
    provide(name, addTwo, A)
    await up('all')
    const B = await login('B', 2)
    await provided([A], [B])
    assertEqual(await make(B, name, { numA: 3, numB: 7 }), { result: 10 }, 'B calls from node 2')
  },
  // presence/presence-reconnectivity.feature, its six scenarios over one restart of all nodes: one watcher per scenario
  // on node 1, then B, C and D log into nodes 1, 2 and 3 and out again.
  async 'presence-subscriptions-across-restart' () {
    const [resumedAll, resumedUsers, droppedUsers, laterUsers, droppedAll, laterAll] = await Promise.all(
      ['W1', 'W2', 'W3', 'W4', 'W5', 'W6'].map(label => login(label, 1)))
    const watchers = [resumedAll, resumedUsers, droppedUsers, laterUsers, droppedAll, laterAll]
    const users = ['B', 'C', 'D']
    watchPresence(resumedAll) // "Subscriptions to all users should be resumed after servers restart"
    watchPresence(resumedUsers, users) // "Subscriptions to individual users resumed after server restarts"
    watchPresence(droppedUsers, users) // "Unsubscribing to individual users while offline works"
    watchPresence(droppedAll) // "Unsubscribing to all users while offline works"
    await presenceInPlace(...watchers)
    await down('all')
    unwatchPresence(droppedUsers, users)
    watchPresence(laterUsers, users) // "Subscribing to individual users while offline works"
    unwatchPresence(droppedAll)
    watchPresence(laterAll) // "Subscribing to all users while offline works"
    await up('all')
    await reconnected(...watchers)
    await presenceInPlace(...watchers)
    // The watchers coming back (they are users too) is left out: only B, C and D count.
    for (const w of watchers) w.told.length = 0
    const others = await Promise.all([login('B', 1), login('C', 2), login('D', 3)])
    const told = [resumedAll, resumedUsers, laterUsers, laterAll]
    for (const w of told) await notified(w, [['B', true], ['C', true], ['D', true]], users)
    await notNotified([droppedUsers, droppedAll], users)
    logout(...others)
    for (const w of told) await notified(w, [['B', false], ['C', false], ['D', false]], users)
    await notNotified([droppedUsers, droppedAll], users)
  },
  // login/login-reconnectivity.feature "Client reconnects with successfully unchanged client data"
  async 'login-reconnect-unchanged-client-data' () {
    const A = await login('alice', 1, { username: 'alice', password: 'alicepw' })
    const alice = { role: 'tester', name: 'Alice' }
    assertEqual(A.clientData, alice, 'the login callback has the client data')
    // The client tells of the client data it first gets too (deepstream's userA has none, so is never told).
    assertEqual(A.clientDataChanges, [alice], 'told of the client data at login')
    await down(1)
    await up(1)
    await reconnected(A)
    assertEqual(A.refusals, [], 'no reauthentication failure')
    assertEqual(A.clientDataChanges, [alice], 'not told again: the client data is unchanged')
  },
  // events/events-listen.feature, the end of the "long scenario": the provider's node goes down and comes back.
  async 'listen-provider-server-restarts' () {
    const { C, S1, S2 } = await listenBackground('C', 'S1', 'S2')
    listen(C, 'event', 'another-event', yes)
    const name = scoped('another-event')
    S1.event.subscribe(name, () => {})
    await offered('C', name, 1)
    await down(2)
    await up(2)
    await reconnected(C, S2)
    // deepstream leaves this out ("requires message connectors to disconnect properly"): it is what should happen.
    await offered('C', name, 2)
  },

  // Not one of deepstream's scenarios: the whole of it around one node going down and coming back. Clients on every
  // node subscribe to an event and a record, provide an RPC on node 2 and node 3, and watch presence.
  async 'node-goes-down-and-comes-back' () {
    const [A, B, C] = await Promise.all([login('A', 1), login('B', 2), login('C', 3)])
    const all = [A, B, C]
    const event = scoped('news'); const rpc = scoped('where')
    subscribeEvent(event, ...all)
    await live(event, A, all)
    const records = await getRecords(scoped('shared'), ...all)
    records[0].set({ step: 'start' })
    await haveRecord(records, 'step', 'start')
    provide(rpc, (data, response, c) => response.send(c.label), B, C)
    await provided([B, C], [A])
    await seenOnline([A, C], ['A', 'B', 'C'])
    watchPresence(A, ['B'])
    watchPresence(C, ['B'])
    await presenceInPlace(A, C)

    await down(2)
    await disconnected(B)
    // The others go on among themselves, and hear that B's node has gone.
    await notified(A, [['B', false]]); await notified(C, [['B', false]])
    C.event.emit(event, 'while node 2 is down')
    await hear(event, ['while node 2 is down'], A, C)
    records[2].set('step', 'node 2 down')
    await haveRecord([records[0], records[2]], 'step', 'node 2 down')
    for (let i = 0; i < 5; i++) assertEqual(await make(A, rpc, i), { result: 'C' }, 'the provider on node 3 answers')

    await up(2)
    await reconnected(B)
    await notified(A, [['B', true]]); await notified(C, [['B', true]])
    // B subscribed again to all it had: the record as it is now, events both ways, its RPC, presence.
    await haveRecord(records, 'step', 'node 2 down')
    await resubscribed(records)
    records[1].set('step', 'node 2 back')
    await haveRecord(records, 'step', 'node 2 back')
    await live(event, C, all)
    await live(event, B, all)
    B.event.emit(event, 'from node 2')
    await hear(event, ['while node 2 is down', 'from node 2'], A, C)
    await provided([B], [A])
    await unprovide(rpc, [C], [A])
    assertEqual(await make(A, rpc, 'x'), { result: 'B' }, 'B provides again')
    const D = await login('D', 2)
    watchPresence(D, ['A'])
    await presenceInPlace(D)
    logout(A)
    await notified(D, [['A', false]])
  },
}

const run = scenarios[scenario] ?? (() => fail(`unknown scenario ${scenario}; known: ${Object.keys(scenarios).join(', ')}`))
const started = Date.now()
run().then(() => { closeAll(); console.log(`OK ${scenario} in ${Date.now() - started} ms`); process.exit(0) },
  error => { closeAll(); console.error('FAILED ' + scenario + ': ' + (error && error.stack || error)); process.exit(1) })
