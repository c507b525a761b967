// Starts the real deepstream server on 127.0.0.1:<port> with only the ws-binary endpoint (the built-in defaults would
// also open MQTT on 0.0.0.0:1883). Prints READY when it listens.
//   node start.cjs <port> [open] [cluster <redis-port> <server-name>]
// With "open" (the benchmarks), anyone may log in under any name, as with StateMesh.Server's defaults.
// With "cluster", the node joins the others that name the same Redis on 127.0.0.1:<redis-port>: messages between nodes
// go through @deepstream/clusternode-redis (Redis pub/sub) and records are cached in Redis by @deepstream/cache-redis,
// so every node reads the same record state. Each node of a cluster needs its own <server-name>.
const { Deepstream } = require('@deepstream/server')

const args = process.argv.slice(2)
const port = Number(args[0])
const open = args.includes('open')
const clusterAt = args.indexOf('cluster')
const cluster = clusterAt < 0 ? null : { redisPort: Number(args[clusterAt + 1]), serverName: args[clusterAt + 2] }
if (!(port > 0) || (cluster && !(cluster.redisPort > 0 && cluster.serverName))) {
  console.error('usage: node start.cjs <port> [open] [cluster <redis-port> <server-name>]')
  process.exit(2)
}
const redis = cluster && { host: '127.0.0.1', port: cluster.redisPort }
const server = new Deepstream({
  serverName: cluster ? cluster.serverName : 'deepstream-for-tests',
  showLogo: false,
  logLevel: 'WARN',
  httpServer: { type: 'default', options: { port, host: '127.0.0.1' } },
  connectionEndpoints: [
    { type: 'ws-binary', options: { urlPath: '/deepstream', heartbeatInterval: 30000, maxAuthAttempts: 3, unauthenticatedClientTimeout: 180000 } },
  ],
  auth: open ? [{ type: 'none' }] : [{
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
  // The plugins copy what they are given (ioredis keeps it), so each gets an object of its own.
  ...(cluster ? { clusterNode: { name: 'redis', options: { ...redis } }, cache: { name: 'redis', options: { ...redis } } } : {}),
})
server.on('started', () => console.log('READY ' + port + (cluster ? ' ' + cluster.serverName : '')))
server.start()
process.on('SIGTERM', () => { server.on('stopped', () => process.exit(0)); server.stop() })
