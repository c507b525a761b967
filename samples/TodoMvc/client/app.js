// The whole app: one deepstream record, "todomvc", holding { items: [{ id, title, done }] }.
import { DeepstreamClient } from '@deepstream/client'

const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/deepstream`
const client = new DeepstreamClient(url)
const list = document.getElementById('todo-list')
const input = document.getElementById('new-todo')
const status = document.getElementById('status')
// Never let the form navigate, even before the record is ready.
document.getElementById('new-todo-form').addEventListener('submit', event => event.preventDefault())

client.on('connectionStateChanged', state => { status.textContent = state })
await client.login({ username: 'browser-' + Math.random().toString(36).slice(2, 8) })
const record = client.record.getRecord('todomvc')
await record.whenReady()

function items () { return record.get('items') || [] }

function render () {
  list.replaceChildren(...items().map((item, index) => {
    const li = document.createElement('li')
    li.className = item.done ? 'done' : ''
    li.dataset.id = item.id
    const box = document.createElement('input')
    box.type = 'checkbox'
    box.checked = item.done
    box.addEventListener('change', () => record.set(`items[${index}].done`, box.checked))
    const label = document.createElement('label')
    label.textContent = item.title
    li.append(box, label)
    return li
  }))
  document.body.dataset.version = String(record.version)
}

record.subscribe(render, true)
document.getElementById('new-todo-form').addEventListener('submit', event => {
  const title = input.value.trim()
  if (!title) return
  record.set('items', [...items(), { id: Date.now().toString(36), title, done: false }])
  input.value = ''
})
document.body.dataset.ready = 'true'
