// TodoMVC on StateMesh with the official deepstream client and no backend code.
//
// The data: a deepstream list "todos" holds the names of the todos in order ("todo/<id>"), and each todo is a record
// of its own, { title, completed }. Editing or ticking one todo writes only its record, so two people never overwrite
// each other's todos. The list itself is the one thing two pages change at once (both add a todo, or one adds while
// another clears the completed ones): a write made on an older version of the list comes back from the node as a
// version conflict, and the merge below replays this page's own adds and removes on top of the list as the node has
// it. Nothing another page did is undone, and nothing this page did is lost.
import { DeepstreamClient } from '@deepstream/client'

const LIST = 'todos'
const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/deepstream`
const client = new DeepstreamClient(url)

const $ = id => document.getElementById(id)
const form = $('new-todo-form')
const input = $('new-todo')
const listView = $('todo-list')
const status = $('status')
const main = $('main')
const footer = $('footer')
const toggleAll = $('toggle-all')
// Never let the form navigate, even before the list is ready.
form.addEventListener('submit', event => event.preventDefault())

// The connection state, in words.
const STATES = {
  CLOSED: ['Not connected', 'offline'],
  AWAITING_CONNECTION: ['Connecting…', 'connecting'],
  CHALLENGING: ['Connecting…', 'connecting'],
  AWAITING_AUTHENTICATION: ['Signing in…', 'connecting'],
  AUTHENTICATING: ['Signing in…', 'connecting'],
  OPEN: ['Connected: changes sync live', 'online'],
  RECONNECTING: ['Connection lost, reconnecting… (changes are kept and sent when it is back)', 'offline'],
  ERROR: ['Connection error', 'offline'],
  CLOSING: ['The server is stopping…', 'offline'],
  RECONNECTION_ATTEMPTS_EXHAUSTED: ['Could not reconnect; reload the page', 'offline']
}
function showState (state) {
  const [text, kind] = STATES[state] || [state, 'connecting']
  status.textContent = text
  status.className = kind
  document.body.dataset.connection = state
}
client.on('connectionStateChanged', showState)
// The client reports problems (a denied write, a timeout) as events; show them in the console and go on.
client.on('error', (error, event, topic) => console.warn('deepstream:', event, topic, error))
showState(client.getConnectionState())

// The list is the one record two pages write at once. A write is made against the version this page has; a page that
// was behind gets a version conflict and the client calls the merge below with the list as the node has it. So that no
// add or remove is ever lost, this page keeps its own changes that the node has not confirmed (pending), sends one write
// of the list at a time (a second write sent before the first is answered would carry a version on data the node never
// had), and replays its pending changes on top of the node's list after a conflict.
const pending = [] // { kind: 'add' | 'remove', name, ready }, in the order they were made
let inFlight = null // the write on its way: { ops, token }
let tokens = 0
let merges = 0

function apply (ops, entries) {
  const result = entries.filter(name => !ops.some(op => op.kind === 'remove' && op.name === name))
  for (const op of ops) if (op.kind === 'add' && !result.includes(op.name)) result.push(op.name)
  return result
}
// The node's list shows which of this page's changes are done: drop those.
function confirmFrom (entries) {
  for (let i = pending.length - 1; i >= 0; i--) {
    const op = pending[i]
    if ((op.kind === 'add') === entries.includes(op.name)) pending.splice(i, 1)
  }
}
const same = (a, b) => a.length === b.length && a.every((name, i) => name === b[i])

// This page's changes that may go out: in order, up to the first add whose record is not written yet.
function ready () {
  const index = pending.findIndex(op => op.ready === false)
  return index < 0 ? pending : pending.slice(0, index)
}
function flush () {
  if (inFlight || ready().length === 0 || !list.isReady) return
  write(apply(ready(), list.getEntries()))
}
function write (entries) {
  const token = ++tokens
  inFlight = { ops: ready().slice(), token }
  const done = error => {
    if (inFlight?.token !== token) return
    clearTimeout(inFlight.watchdog)
    if (!error) for (const op of inFlight.ops) if (pending.includes(op)) pending.splice(pending.indexOf(op), 1)
    inFlight = null
    if (error) setTimeout(flush, 250); else flush()
  }
  // An answer can be lost on the client's side (a conflict answered while it had already merged): after a while, ask
  // the node what it has.
  inFlight.watchdog = setTimeout(() => verify(token), 2000)
  list.setEntries(entries, done)
}
function verify (token) {
  if (inFlight?.token !== token) return
  client.record.snapshot(LIST).then(entries => {
    if (inFlight?.token !== token) return
    confirmFrom(Array.isArray(entries) ? entries : [])
    inFlight = null
    flush()
  }, () => { if (inFlight?.token === token) inFlight.watchdog = setTimeout(() => verify(token), 2000) })
}

function mergeList (localEntries, localVersion, remoteEntries, remoteVersion, done) {
  merges++
  const remote = Array.isArray(remoteEntries) ? remoteEntries : []
  confirmFrom(remote)
  const merged = apply(ready(), remote)
  done(null, merged)
  // The client has now either sent the merged list itself (its version is the node's + 1), or, when the conflict came
  // back while it thought itself up to date, kept its own list and taken the node's version without sending anything.
  queueMicrotask(() => {
    const token = inFlight?.token ?? ++tokens
    if (inFlight) clearTimeout(inFlight.watchdog)
    if (list.version === remoteVersion + 1) {
      inFlight = { ops: [], token, watchdog: setTimeout(() => verify(token), 500) }
      return
    }
    inFlight = null
    if (ready().length === 0 && same(list.getEntries(), remote)) return
    if (same(list.getEntries(), merged) && !same(merged, remote)) {
      // Setting what the client already shows sends nothing: first write the node's own list, then the changes.
      write(remote)
      inFlight.ops = []
      return
    }
    if (!same(list.getEntries(), merged)) write(merged)
  })
}
client.record.setMergeStrategy(LIST, mergeList)

await client.login({ username: 'browser-' + Math.random().toString(36).slice(2, 8) })
const list = client.record.getList(LIST)
await list.whenReady()

const records = new Map() // name -> its record, subscribed while the name is in the list

function addTodo (title) {
  const name = 'todo/' + Date.now().toString(36) + '-' + Math.random().toString(36).slice(2, 8)
  // The todo's record first, then its name in the list: a page that sees the name finds the record filled. The add
  // takes its place in the order now, and goes out once its record is written (and every add before it).
  const op = { kind: 'add', name, ready: false }
  pending.push(op)
  client.record.setData(name, { title, completed: false }, error => {
    if (error) { console.error('could not create', name, error); pending.splice(pending.indexOf(op), 1); return }
    op.ready = true
    flush()
    follow()
  })
  return name
}

function removeTodos (names) {
  if (names.length === 0) return
  for (const name of names) pending.push({ kind: 'remove', name })
  flush()
  for (const name of names) {
    const record = records.get(name)
    records.delete(name)
    if (record) record.delete().catch(error => console.error('could not delete', name, error))
  }
  render()
}

function todo (name) {
  const record = records.get(name)
  const data = record && record.isReady ? record.get() : null
  return data && typeof data.title === 'string' ? { name, title: data.title, completed: data.completed === true } : null
}

function filter () {
  const hash = location.hash.replace(/^#\/?/, '')
  return hash === 'active' || hash === 'completed' ? hash : 'all'
}

function render () {
  const todos = apply(ready(), list.getEntries()).map(todo).filter(Boolean)
  const left = todos.filter(t => !t.completed).length
  const shown = todos.filter(t => filter() === 'all' || (filter() === 'active') === !t.completed)
  listView.replaceChildren(...shown.map(view))
  main.hidden = footer.hidden = todos.length === 0
  toggleAll.checked = todos.length > 0 && left === 0
  $('todo-count').textContent = `${left} ${left === 1 ? 'item' : 'items'} left`
  $('clear-completed').hidden = todos.length === left
  for (const a of footer.querySelectorAll('#filters a')) a.classList.toggle('selected', a.dataset.filter === filter())
  document.body.dataset.count = String(todos.length)
}

function view (item) {
  const li = document.createElement('li')
  li.dataset.name = item.name
  li.classList.toggle('completed', item.completed)
  const box = document.createElement('input')
  box.type = 'checkbox'
  box.className = 'toggle'
  box.checked = item.completed
  box.setAttribute('aria-label', 'completed')
  box.addEventListener('change', () => records.get(item.name)?.set('completed', box.checked))
  const label = document.createElement('label')
  label.textContent = item.title
  label.title = 'double-click to edit'
  label.addEventListener('dblclick', () => edit(li, item))
  const destroy = document.createElement('button')
  destroy.className = 'destroy'
  destroy.setAttribute('aria-label', 'delete')
  destroy.addEventListener('click', () => removeTodos([item.name]))
  li.append(box, label, destroy)
  return li
}

function edit (li, item) {
  li.classList.add('editing')
  const field = document.createElement('input')
  field.className = 'edit'
  field.value = item.title
  let finished = false
  const finish = save => {
    if (finished) return
    finished = true
    const title = field.value.trim()
    if (save && title && title !== item.title) records.get(item.name)?.set('title', title)
    if (save && !title) removeTodos([item.name])
    render()
  }
  field.addEventListener('keydown', event => {
    if (event.key === 'Enter') finish(true)
    if (event.key === 'Escape') finish(false)
  })
  field.addEventListener('blur', () => finish(true))
  li.append(field)
  field.focus()
}

// Keep one subscribed record per todo shown (the list with this page's pending changes), and drop the ones that left.
function follow () {
  const names = apply(ready(), list.getEntries())
  for (const name of names) {
    if (records.has(name)) continue
    const record = client.record.getRecord(name)
    records.set(name, record)
    record.subscribe(render)
    record.on('delete', () => { if (records.get(name) === record) records.delete(name); render() })
    record.whenReady().then(render)
  }
  for (const [name, record] of records) {
    if (!names.includes(name)) { records.delete(name); record.discard() }
  }
  render()
}

list.subscribe(() => follow())
follow()
form.addEventListener('submit', () => {
  const title = input.value.trim()
  if (!title) return
  addTodo(title)
  input.value = ''
})
toggleAll.addEventListener('change', () => {
  for (const name of list.getEntries()) records.get(name)?.set('completed', toggleAll.checked)
})
$('clear-completed').addEventListener('click', () => {
  removeTodos(list.getEntries().filter(name => todo(name)?.completed))
})
window.addEventListener('hashchange', render)

// For the end-to-end test: add several todos at once, in one tick, as a user typing very fast would.
window.todomvc = { add: titles => titles.map(addTodo), merges: () => merges, pending: () => pending.length }
document.body.dataset.ready = 'true'
