// What the scenario scripts check with: a failed check throws, a wait that takes too long throws "timed out".

export function fail (message) { throw new Error(message) }

export function assertEqual (actual, expected, what) {
  const a = JSON.stringify(actual); const e = JSON.stringify(expected)
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`)
}

/** `promise`, or a rejection "timed out: <what>" after `ms`. */
export function within (promise, what, ms) {
  let timer
  return Promise.race([promise, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms) })])
    .finally(() => clearTimeout(timer))
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
