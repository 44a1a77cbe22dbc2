// The layer order of src/ (docs/architecture.md): data flows one way and a folder imports only from
// folders to its left:  core ← formats ← sources ← cache ← catalog ← fuse ← daemon ← cli.
// src/extract/ (the `lazy-als extract` engine) sits beside the catalog and uses core/formats/cache only.
// native/ (the C addon) is loaded by exactly one module, src/fuse/native-backend.ts; its types
// (native/index.d.ts) are imported by the native backend's parts, src/fuse/native-*.ts.
const order = ['core', 'formats', 'sources', 'cache', 'catalog', 'fuse', 'daemon', 'cli'];
const allowed = {
  extract: ['core', 'formats', 'cache'],
};
order.forEach((layer, i) => { allowed[layer] = order.slice(0, i); });
const all = [...order, 'extract'];
allowed.fuse = [...allowed.fuse];
allowed.daemon = [...allowed.daemon, 'extract'];
allowed.cli = [...allowed.cli, 'extract'];

const layerRules = Object.entries(allowed).map(([layer, may]) => {
  const forbidden = all.filter((l) => l !== layer && !may.includes(l));
  return {
    name: `layer-${layer}`,
    comment: `src/${layer}/ may import only from ${may.length ? may.map((m) => `src/${m}/`).join(', ') : 'itself'}`,
    severity: 'error',
    from: { path: `^src/${layer}/` },
    to: { path: `^src/(${forbidden.join('|')})/` },
  };
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'native-one-importer',
      comment: 'the C addon (native/) is loaded by src/fuse/native-backend.ts only',
      severity: 'error',
      from: { pathNot: '^src/fuse/native-backend\\.ts$' },
      to: { path: '^native/', pathNot: '^native/index\\.d\\.ts$' },
    },
    {
      name: 'native-types-in-backend',
      comment: "the addon's types (native/index.d.ts) are imported by the native backend's parts (src/fuse/native-*.ts) only",
      severity: 'error',
      from: { pathNot: '^src/fuse/native-[^/]+\\.ts$' },
      to: { path: '^native/index\\.d\\.ts$' },
    },
    {
      name: 'src-not-into-tests',
      comment: 'src/ never imports test/ or bench/ code',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-circular',
      comment: 'no import cycles in src/',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.d.ts', '.js', '.mjs', '.cjs', '.json', '.node'] },
  },
};
