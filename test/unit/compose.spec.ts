import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { isUuid, parseConfig, readDotEnv } from '../../src/config/config';
import { DEVICES, LIBRARY, natsConf } from '../../deploy/nats/authorization.cjs';

/**
 * docker-compose.yml runs a three-device cluster. Nothing here starts Docker: the file is parsed
 * and every device service is checked against the device contract (docs/http.md "Starting a device").
 */
const ROOT = join(__dirname, '..', '..');
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true });
const services: Record<string, any> = compose.services;

/** Compose accepts `environment` as a map or as a list of KEY=value. */
function environmentOf(service: any): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((line: string) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)]));
}

function commandOf(service: any): string[] {
  const c = service.command ?? [];
  return Array.isArray(c) ? c.map(String) : String(c).split(/\s+/);
}

/** "3001:3001", "127.0.0.1:3001:3001/tcp" or the long form → container ports published. */
function publishedContainerPorts(service: any): number[] {
  return (service.ports ?? []).map((p: any) => {
    if (typeof p === 'object') return Number(p.target);
    const parts = String(p)
      .replace(/\/(tcp|udp)$/, '')
      .split(':');
    return Number(parts[parts.length - 1]);
  });
}

const KNOWN_VARIABLES = [
  'DEVICE_ID',
  'DEVICE_NAME',
  'LIBRARY_ID',
  'LIBRARY_KEY',
  'DATABASE_URL',
  'DATA_DIR',
  'NATS_URL',
  'NATS_CREDS',
  'NATS_USER',
  'NATS_PASSWORD',
  'NATS_TOKEN',
  'PORT',
  'SYNC_ENABLED',
  'SYNC_MAX_CLOCK_DRIFT_MS',
  'SYNC_HEARTBEAT_INTERVAL_MS',
  'SYNC_BACKFILL_PAUSE_MS',
  'SYNC_STREAM_REPLICAS',
  'HOST',
  'API_TOKEN',
];

/** `${VAR:?message}` (compose interpolation) → VAR, else null. */
const interpolated = (value: string): string | null =>
  /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[?-][^}]*)?\}$/.exec(value)?.[1] ?? null;
/** .env.example: what `cp .env.example .env` gives compose to interpolate. */
const envExample = readDotEnv(join(ROOT, '.env.example'));
const withEnvExample = (env: Record<string, string>): Record<string, string> =>
  Object.fromEntries(
    Object.entries(env).map(([k, v]) => [
      k,
      interpolated(v) === null ? v : envExample[interpolated(v)!] || `stand-in-${interpolated(v)}`,
    ]),
  );

const deviceNames = Object.keys(services).filter((name) => services[name].build !== undefined);
const devices = deviceNames.map((name) => ({ name, service: services[name], env: environmentOf(services[name]) }));
const natsNames = Object.keys(services).filter((name) => String(services[name].image ?? '').startsWith('nats:'));
const postgresNames = Object.keys(services).filter((name) =>
  String(services[name].image ?? '').startsWith('postgres:'),
);

describe('docker-compose.yml', () => {
  it('runs three devices, a clustered NATS and one Postgres', () => {
    expect(deviceNames).toHaveLength(3);
    expect(natsNames.length).toBeGreaterThanOrEqual(3);
    expect(postgresNames).toHaveLength(1);
  });

  it('gives every device the same LIBRARY_ID, a uuid', () => {
    const ids = devices.map((d) => d.env.LIBRARY_ID);
    for (const id of ids) expect(isUuid(id ?? '')).toBe(true);
    expect(new Set(ids).size).toBe(1);
  });

  it('gives every device its own DEVICE_NAME', () => {
    const names = devices.map((d) => d.env.DEVICE_NAME);
    for (const n of names) expect(n).toBeTruthy();
    expect(new Set(names).size).toBe(devices.length);
  });

  it('uses only the variables of the contract, with values the device accepts', () => {
    for (const d of devices) {
      for (const key of Object.keys(d.env)) expect(KNOWN_VARIABLES).toContain(key);
      // the device's own parser: a value it would reject ends the container at start
      const config = parseConfig(withEnvExample(d.env), mkdtempSync(join(tmpdir(), 'compose-env-')));
      expect(config.libraryId).toBe(d.env.LIBRARY_ID.toLowerCase());
      expect(config.syncEnabled).toBe(true);
    }
  });

  it('listens on every interface of its container, so it requires API_TOKEN, which comes from .env', () => {
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8');
    expect(example).toMatch(/^API_TOKEN=$/m);
    for (const d of devices) {
      expect(d.env.HOST).toBe('0.0.0.0');
      // no secret in the file: compose refuses to start without API_TOKEN in the environment or .env
      expect(d.env.API_TOKEN).toMatch(/^\$\{API_TOKEN:\?[^}]+\}$/);
      expect(parseConfig(withEnvExample(d.env), mkdtempSync(join(tmpdir(), 'compose-env-'))).apiToken).toBeTruthy();
      expect(() => parseConfig({ ...d.env, API_TOKEN: '' }, mkdtempSync(join(tmpdir(), 'compose-env-')))).toThrow(
        /API_TOKEN/,
      );
    }
  });

  it('publishes device ports on the loopback of the host only', () => {
    for (const d of devices)
      for (const p of d.service.ports ?? []) {
        const hostIp = typeof p === 'object' ? p.host_ip : String(p).split(':').slice(0, -2).join(':');
        expect(hostIp).toBe('127.0.0.1');
      }
  });

  it('points every device at its own database on the Postgres service, created by the init script', () => {
    const pg = services[postgresNames[0]];
    const initMounts: string[] = (pg.volumes ?? [])
      .map((v: any) => (typeof v === 'string' ? v : `${v.source}:${v.target}`))
      .filter((v: string) => v.includes('/docker-entrypoint-initdb.d'));
    expect(initMounts).toHaveLength(1);
    const initScript = readFileSync(join(ROOT, initMounts[0].split(':')[0]), 'utf8');
    const created = [...initScript.matchAll(/create\s+database\s+"?([A-Za-z0-9_]+)"?/gi)].map((m) => m[1]);

    const databases = devices.map((d) => {
      const url = new URL(d.env.DATABASE_URL);
      expect(['postgres:', 'postgresql:']).toContain(url.protocol);
      expect(url.hostname).toBe(postgresNames[0]);
      const user = decodeURIComponent(url.username);
      expect(user).toBe(pg.environment.POSTGRES_USER ?? 'postgres');
      if (pg.environment.POSTGRES_PASSWORD)
        expect(decodeURIComponent(url.password)).toBe(String(pg.environment.POSTGRES_PASSWORD));
      return url.pathname.slice(1);
    });
    expect(new Set(databases).size).toBe(devices.length);
    for (const db of databases) expect(created).toContain(db);
  });

  it('points every device at the NATS servers, which run JetStream in one cluster', () => {
    for (const d of devices) {
      const hosts = d.env.NATS_URL.split(',').map((s) => new URL(s.trim()));
      for (const h of hosts) {
        expect(h.protocol).toBe('nats:');
        expect(natsNames).toContain(h.hostname);
        expect(h.port).toBe('4222');
      }
      expect(new Set(hosts.map((h) => h.hostname))).toEqual(new Set(natsNames));
      // the library's stream replicated on every server of the cluster
      expect(Number(d.env.SYNC_STREAM_REPLICAS)).toBe(natsNames.length);
    }
    const clusterNames = new Set<string>();
    for (const name of natsNames) {
      const cmd = commandOf(services[name]);
      expect(cmd.some((a) => a === '-js' || a === '--jetstream')).toBe(true);
      clusterNames.add(cmd[cmd.indexOf('--cluster_name') + 1]);
      // routes to every other NATS service
      const routes = cmd[cmd.indexOf('--routes') + 1].split(',').map((r) => new URL(r).hostname);
      expect(new Set([...routes, name])).toEqual(new Set(natsNames));
      expect(cmd[cmd.indexOf('--server_name') + 1]).toBe(name);
    }
    expect(clusterNames.size).toBe(1);
  });

  it('sets and publishes every device PORT, each on its own host port', () => {
    const hostPorts: string[] = [];
    for (const d of devices) {
      const port = Number(d.env.PORT);
      expect(Number.isInteger(port) && port > 0).toBe(true);
      expect(publishedContainerPorts(d.service)).toContain(port);
      hostPorts.push(
        ...(d.service.ports ?? []).map((p: any) =>
          typeof p === 'object' ? String(p.published) : String(p).split(':').slice(-2)[0],
        ),
      );
    }
    expect(hostPorts.sort()).toEqual(['3001', '3002', '3003']);
  });

  it('starts devices only once Postgres and NATS are healthy, and checks their health', () => {
    for (const d of devices) {
      const deps = d.service.depends_on;
      for (const dep of [...postgresNames, ...natsNames]) {
        expect(deps[dep]?.condition).toBe('service_healthy');
        expect(services[dep].healthcheck?.test).toBeDefined();
      }
      // ready: the device has caught up with its library (not merely up)
      expect(JSON.stringify(d.service.healthcheck?.test)).toContain('/health/ready');
    }
  });

  it('builds every device from the Dockerfile (Node LTS, slim, not root), whose command is node dist/main.js', () => {
    for (const d of devices) {
      const build = typeof d.service.build === 'string' ? { context: d.service.build } : d.service.build;
      expect(build.context).toBe('.');
      expect(build.dockerfile ?? 'Dockerfile').toBe('Dockerfile');
    }
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    const cmds = dockerfile.split('\n').filter((l) => /^CMD\s/.test(l));
    const last = cmds[cmds.length - 1].replace(/^CMD\s+/, '');
    const argv = last.startsWith('[') ? (JSON.parse(last) as string[]) : last.split(/\s+/);
    expect(argv).toEqual(['node', 'dist/main.js']);
    // a maintained Node LTS, slim; the running stage as the unprivileged `node` user
    expect(dockerfile).toMatch(/^FROM node:22-bookworm-slim/m);
    const runStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    expect(runStage).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/npm ci/);
    expect(dockerfile).toMatch(/npm run build/);
  });

  describe('monitoring profile (docker compose --profile monitoring up)', () => {
    const prometheus = services.prometheus;
    const grafana = services.grafana;
    const scrape = parse(readFileSync(join(ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8'));
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'sync.json'), 'utf8'));

    it('runs Prometheus and Grafana only with the profile, published on loopback only', () => {
      for (const s of [prometheus, grafana]) {
        expect(s.profiles).toEqual(['monitoring']);
        for (const p of s.ports) expect(String(p)).toMatch(/^127\.0\.0\.1:/);
      }
    });

    it('scrapes every device at its /metrics, with the API token', () => {
      const job = scrape.scrape_configs.find((j: any) => j.job_name === 'devices');
      expect(job.metrics_path).toBe('/metrics');
      expect(job.authorization).toMatchObject({ type: 'Bearer', credentials_file: '/tmp/api-token' });
      const targets = job.static_configs.flatMap((c: any) => c.targets);
      expect(new Set(targets)).toEqual(new Set(devices.map((d) => `${d.name}:${d.env.PORT}`)));
      // the token file is written from the environment, which compose fills from .env
      expect(JSON.stringify(prometheus.entrypoint)).toContain('/tmp/api-token');
      expect(interpolated(String(environmentOf(prometheus).API_TOKEN))).toBe('API_TOKEN');
      expect(prometheus.volumes.some((v: string) => v.startsWith('./deploy/prometheus/prometheus.yml:'))).toBe(true);
    });

    it("provisions Grafana with Prometheus and the dashboard, whose queries use the devices' metrics", () => {
      expect(grafana.volumes).toEqual(
        expect.arrayContaining([
          './deploy/grafana/provisioning:/etc/grafana/provisioning:ro',
          './deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro',
        ]),
      );
      const ds = parse(
        readFileSync(join(ROOT, 'deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8'),
      );
      expect(ds.datasources[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090', uid: 'prometheus' });
      const exprs: string[] = dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr));
      const used = new Set(exprs.flatMap((e) => e.match(/\b(sync|process)_[a-z_]+/g) ?? []));
      for (const m of [
        'sync_phase',
        'sync_backfill_rows_done',
        'sync_peer_pending',
        'sync_peer_lag_ms',
        'sync_dead_letters',
      ])
        expect(used).toContain(m);
      // every metric the dashboard reads is one a device serves (docs/design.md "Observability")
      const documented = readFileSync(join(ROOT, 'docs', 'design.md'), 'utf8');
      for (const m of used) {
        const base = m.replace(/_(bucket|sum|count)$/, '');
        if (!base.startsWith('process_')) expect(documented).toContain(base);
      }
    });
  });

  describe('NATS authorization (deploy/nats)', () => {
    const conf = readFileSync(join(ROOT, 'deploy', 'nats', 'nats.conf'), 'utf8');

    it('runs every NATS server with deploy/nats/nats.conf, as generated from the device list', () => {
      expect(conf).toBe(natsConf());
      for (const name of natsNames) {
        const cmd = commandOf(services[name]);
        expect(cmd[cmd.indexOf('-c') + 1]).toBe('/etc/nats/nats.conf');
        expect(services[name].volumes).toContain('./deploy/nats/nats.conf:/etc/nats/nats.conf:ro');
        // every password variable nats.conf reads is passed, from .env
        const env = environmentOf(services[name]);
        for (const [, variable] of conf.matchAll(/password: \$([A-Za-z_][A-Za-z0-9_]*)/g)) {
          expect(interpolated(env[variable] ?? '')).toBe(variable);
          expect(envExample[variable]).toBeTruthy();
        }
      }
    });

    it("logs every device in as the NATS user made for its fixed DEVICE_ID, with that user's password", () => {
      const natsEnv = environmentOf(services[natsNames[0]]);
      const ids = devices.map((d) => {
        const user = DEVICES.find((u) => u.name === d.env.NATS_USER);
        expect(user).toBeDefined();
        expect(d.env.DEVICE_ID).toBe(user!.id);
        expect(user!.libraries).toEqual([d.env.LIBRARY_ID]);
        expect(d.env.LIBRARY_ID).toBe(LIBRARY);
        // the device's NATS_PASSWORD and the server's password of its user are the same variable
        const variable = user!.password.replace(/^\$/, '');
        expect(interpolated(d.env.NATS_PASSWORD)).toBe(variable);
        expect(interpolated(natsEnv[variable])).toBe(variable);
        const config = parseConfig(withEnvExample(d.env), mkdtempSync(join(tmpdir(), 'compose-env-')));
        expect(config.natsAuth).toEqual({ kind: 'password', user: user!.name, pass: envExample[variable] });
        return d.env.DEVICE_ID;
      });
      expect(new Set(ids).size).toBe(devices.length);
    });

    it('names in .env.example every variable compose requires (API_TOKEN left empty: the user sets it)', () => {
      const text = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
      for (const [, variable] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):\?/g)) {
        expect(Object.keys(envExample)).toContain(variable);
        if (variable !== 'API_TOKEN') expect(envExample[variable]).toBeTruthy();
      }
    });
  });
});
