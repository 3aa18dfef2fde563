// The fleet at a glance: devices by status and by model version, active rollouts, and what
// people did lately.

import {
  Card,
  Empty,
  ErrorNotice,
  Loaded,
  PageHeader,
  Stat,
  StackedBar,
  Meter,
  Loading,
} from '../components/ui';
import { ago, timestamp } from '../lib/format';
import { actor, describe } from '../lib/audit';
import { seenWithin, versionCounts, type Device } from '../lib/fleet';
import { usePoll } from '../lib/poll';
import { can } from '../lib/roles';
import { href } from '../lib/router';
import { useSession } from '../lib/session';
import { ActiveRollouts } from './Rollouts';

/** A device not heard from for this long is shown as silent. */
const SILENT_AFTER_SECS = 300;

export function Overview() {
  const { client } = useSession();
  const devices = usePoll('overview-devices', (signal) =>
    client.get('/api/v1/devices', { signal }),
  );
  const models = usePoll('overview-models', (signal) => client.get('/api/v1/models', { signal }));

  return (
    <>
      <PageHeader
        title="Overview"
        subtitle="Devices, the versions they run, rollouts in progress and recent changes."
      />
      <Loaded data={devices.data} error={devices.error} what="devices">
        {(d) => (
          <>
            <Tiles devices={d.devices} models={models.data?.models.length} />
            <div class="grid-2">
              <Card title="Devices by status" testid="devices-by-status">
                {d.devices.length === 0 ? <NoDevices /> : <ByStatus devices={d.devices} />}
              </Card>
              <Card title="Devices by model version" testid="devices-by-version">
                {d.devices.length === 0 ? <NoDevices /> : <ByVersion devices={d.devices} />}
              </Card>
            </div>
          </>
        )}
      </Loaded>
      <Card
        title="Active rollouts"
        aside={<a href={href('rollouts')}>All rollouts →</a>}
        testid="active-rollouts"
      >
        <ActiveRollouts />
      </Card>
      <RecentEvents />
    </>
  );
}

function NoDevices() {
  return (
    <Empty title="No devices have enrolled yet.">
      Create an enrollment token (<code>flotilla enroll-tokens create --label site=…</code>) and
      start <code>flotilla-agent</code> on a device with it; see docs/agent.md.
    </Empty>
  );
}

function Tiles(props: { devices: Device[]; models: number | undefined }) {
  const active = props.devices.filter((d) => d.status === 'active');
  const silent = active.filter((d) => !seenWithin(d, SILENT_AFTER_SECS)).length;
  const pending = props.devices.filter((d) => d.status === 'pending').length;
  return (
    <div class="stats">
      <Stat label="Devices" value={props.devices.length} hint={`${active.length} active`} />
      <Stat
        label="Silent"
        value={silent}
        hint={`active, not heard from for ${SILENT_AFTER_SECS / 60} min`}
      />
      <Stat
        label="Awaiting approval"
        value={pending}
        hint={
          pending ? (
            <a href={href('devices', undefined, { status: 'pending' })}>Review</a>
          ) : (
            'none pending'
          )
        }
      />
      <Stat
        label="Models"
        value={props.models ?? '…'}
        hint={<a href={href('models')}>Registry</a>}
      />
    </div>
  );
}

function ByStatus(props: { devices: Device[] }) {
  const active = props.devices.filter((d) => d.status === 'active');
  const silent = active.filter((d) => !seenWithin(d, SILENT_AFTER_SECS)).length;
  const count = (s: string) => props.devices.filter((d) => d.status === s).length;
  return (
    <StackedBar
      parts={[
        { label: 'Active, reporting', value: active.length - silent, tone: 'good' },
        { label: 'Active, silent', value: silent, tone: 'warn' },
        { label: 'Pending approval', value: count('pending'), tone: 'info' },
        { label: 'Revoked', value: count('revoked'), tone: 'muted' },
      ]}
    />
  );
}

function ByVersion(props: { devices: Device[] }) {
  const rows = versionCounts(props.devices);
  if (!rows.length) {
    return (
      <Empty title="No device runs a model yet.">
        Deploy a version (<code>flotilla deploy MODEL@VERSION --selector …</code>) or start a
        rollout; devices show here once they report it active.
      </Empty>
    );
  }
  const max = Math.max(...rows.map((r) => r.devices));
  return (
    <table class="table compact">
      <thead>
        <tr>
          <th>Model</th>
          <th>Version</th>
          <th class="num">Devices</th>
          <th class="bar-col" />
        </tr>
      </thead>
      <tbody>
        {rows.map((r) => (
          <tr key={`${r.model}@${r.version}`}>
            <td>
              <a href={href('models', r.model)}>{r.model}</a>
            </td>
            <td>
              <code>{r.version}</code>
            </td>
            <td class="num">{r.devices}</td>
            <td class="bar-col">
              <Meter value={r.devices} max={max} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function RecentEvents() {
  const { client, role } = useSession();
  const allowed = can(role, 'audit');
  const audit = usePoll(allowed ? 'overview-audit' : null, (signal) =>
    client.get('/api/v1/audit', { query: { limit: 12, exclude_devices: true }, signal }),
  );
  return (
    <Card
      title="Recent events"
      aside={allowed ? 'from the audit log' : undefined}
      testid="recent-events"
    >
      {!allowed ? (
        <Empty title="The audit log is for admins.">
          Sign in with an admin token to see who changed what.
        </Empty>
      ) : audit.data ? (
        audit.data.entries.length === 0 ? (
          <Empty title="Nothing has changed yet.">
            Publishing, deployments, rollouts and device approvals show here.
          </Empty>
        ) : (
          <ul class="events">
            {audit.data.entries.map((e) => (
              <li key={e.id}>
                <span class={`event-dot outcome-${e.outcome}`} title={e.outcome} />
                <span class="event-text">
                  <strong>{actor(e)}</strong> {describe(e)}
                  {e.outcome !== 'success' && (
                    <span class="muted">
                      {' '}
                      ({e.outcome}, {e.status})
                    </span>
                  )}
                </span>
                <time class="muted" dateTime={e.at} title={timestamp(e.at)}>
                  {ago(e.at)}
                </time>
              </li>
            ))}
          </ul>
        )
      ) : audit.error ? (
        <ErrorNotice error={audit.error} what="recent events" />
      ) : (
        <Loading what="recent events" />
      )}
    </Card>
  );
}
