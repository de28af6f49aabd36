// Runs the reference PDS (@atproto/pds from npm) for
// scripts/bench-vs-reference.sh. Its settings come from the PDS_* environment
// as in the reference distribution; REFERENCE_PDS_DIR is the npm prefix the
// package was installed into. Stops on SIGINT or SIGTERM.
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const prefix = process.env.REFERENCE_PDS_DIR
if (!prefix) {
  console.error('reference-pds: set REFERENCE_PDS_DIR to the npm prefix of @atproto/pds')
  process.exit(2)
}
const entry = path.join(prefix, 'node_modules/@atproto/pds/dist/index.js')
const { PDS } = await import(pathToFileURL(entry).href)

await PDS.run({
  onStarted: (pds) => {
    // The benchmark script waits for this line.
    console.log(`reference pds listening on port ${pds.ctx.cfg.service.port}`)
  },
})
