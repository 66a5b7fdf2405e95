// docs/http.md promises `node dist/main.js`; tsc emits the app under dist/src, so point the contract path at it.
const { writeFileSync } = require('node:fs');
writeFileSync(require('node:path').join(__dirname, '..', 'dist', 'main.js'), "require('./src/main');\n");
