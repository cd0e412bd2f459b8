// The import rules of docs/code-map.md, checked by `npm run lint:layers` (part of `npm test`).
// Whitelist: an import between our folders that no `allowed` rule matches is an error. Node's own
// modules and npm packages are always allowed. Keep this file and docs/code-map.md in step.
const lib = (name, deps) => ({
  from: { path: `^src/${name}/` },
  to: { path: `^src/(${[name, ...deps].join('|')})/` },
});
const external = { dependencyTypes: ['core', 'npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'] };

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  allowedSeverity: 'error',
  allowed: [
    { from: {}, to: external },
    // Libraries (src/), lowest first. A library never imports services/, bench/ or test/.
    lib('util', []),
    lib('gen', []),
    lib('config', ['util']),
    lib('data', ['util']),
    lib('store', ['util']),
    lib('audience', ['util']),
    lib('index', ['util', 'config', 'store']),
    lib('model', ['util', 'gen', 'config', 'data']),
    lib('stream', ['util', 'data', 'gen', 'store']),
    lib('serve', ['util', 'gen', 'config', 'store', 'index', 'audience', 'stream']),
    lib('eval', ['util', 'data', 'model', 'audience', 'store', 'index', 'serve']),
    // Processes: the service entry points and the CLI (services/cli) use any library; the CLI
    // starts the services. A service never imports the CLI.
    { from: { path: '^services/cli/' }, to: { path: '^(src|services)/' } },
    { from: { path: '^services/' }, to: { path: '^(src/|services/(?!cli/))' } },
    // Benchmarks may use everything, including the test fixtures (the Kafka broker).
    { from: { path: '^bench/' }, to: { path: '^(src|services|bench|test)/' } },
    { from: { path: '^test/' }, to: { path: '^(src|services|bench|test)/' } },
  ],
  forbidden: [
    {
      name: 'no-circular',
      comment: 'Two modules that import each other at run time, directly or through others (type-only imports do not count).',
      severity: 'error',
      from: { pathNot: '^src/gen/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'], conditionNames: ['import', 'require', 'node', 'default'], exportsFields: ['exports'] },
  },
};
