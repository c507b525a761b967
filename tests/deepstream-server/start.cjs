// Starts the real deepstream server on 127.0.0.1:<port> with only the ws-binary endpoint (the built-in defaults would
// also open MQTT on 0.0.0.0:1883). Prints READY when it listens. usage: node start.cjs <port> [open]
// With "open" (the benchmarks), anyone may log in under any name, as with StateMesh.Server's defaults.
const { Deepstream } = require('@deepstream/server')

const port = Number(process.argv[2])
const server = new Deepstream({
  serverName: 'deepstream-for-tests',
  showLogo: false,
  logLevel: 'WARN',
  httpServer: { type: 'default', options: { port, host: '127.0.0.1' } },
  connectionEndpoints: [
    { type: 'ws-binary', options: { urlPath: '/deepstream', heartbeatInterval: 30000, maxAuthAttempts: 3, unauthenticatedClientTimeout: 180000 } },
  ],
  auth: process.argv[3] === 'open' ? [{ type: 'none' }] : [{
    type: 'file',
    options: {
      users: {
        ana: { password: 'anapw', clientData: { role: 'tester' }, serverData: {} },
        bob: { password: 'bobpw', clientData: {}, serverData: {} },
      },
    },
  }],
  permission: { type: 'none' },
  monitoring: { type: 'none' },
  telemetry: { type: 'deepstreamIO', options: { enabled: false } },
})
server.on('started', () => console.log('READY ' + port))
server.start()
process.on('SIGTERM', () => { server.on('stopped', () => process.exit(0)); server.stop() })
