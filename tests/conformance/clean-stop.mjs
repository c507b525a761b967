// The official client through a node's stop. usage: node clean-stop.mjs <ws-url>
// Logs in, prints "READY", then reports what the node did when it stopped: whether it said CLOSING before the
// connection ended ("CLOSING"), and how the WebSocket ended ("CLOSE <code>"). Exits 0 once the socket closed, 1 after
// 60 s without that.
import { createRequire } from 'node:module'
import deepstreamModule from '@deepstream/client'

const require = createRequire(import.meta.url)
const { socketFactory } = require('@deepstream/client/dist/src/connection/socket-factory')
const { DeepstreamClient } = deepstreamModule
const { TOPIC, CONNECTION_ACTION } = require('@deepstream/protobuf/dist/types/all')
const CONNECTION = TOPIC.CONNECTION
const CLOSING = CONNECTION_ACTION.CLOSING

let sawClosing = false
let sockets = 0
// The client's own socket, watched: the messages it parses and the close code of the WebSocket underneath.
function watchedSocketFactory (url, options, heartbeat) {
  const socket = socketFactory(url, options, heartbeat)
  if (++sockets > 1) return socket // a reconnect after the stop; only the first socket is reported
  const parsed = socket.onparsedmessages
  Object.defineProperty(socket, 'onparsedmessages', {
    configurable: true,
    get () { return this._watchedParsed ?? parsed },
    set (handler) {
      this._watchedParsed = messages => {
        for (const m of messages) if (m.topic === CONNECTION && m.action === CLOSING) { sawClosing = true; console.log('CLOSING') }
        handler(messages)
      }
    }
  })
  socket.on('close', code => {
    console.log(`CLOSE ${code}${sawClosing ? '' : ' (no CLOSING before it)'}`)
    process.exit(0)
  })
  return socket
}

const client = new DeepstreamClient(process.argv[2], { socketFactory: watchedSocketFactory, maxReconnectAttempts: 0 })
client.on('error', () => {})
await client.login({})
console.log('READY')
setTimeout(() => { console.log('TIMEOUT: the socket did not close'); process.exit(1) }, 60000)
