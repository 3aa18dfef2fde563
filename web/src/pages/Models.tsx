// The registry: models, their signed versions (size, digest, signers, tensors), and yanking.

import { useState } from 'preact/hooks';
import type { Schemas } from '../api/client';
import {
  Badge,
  Card,
  ConfirmDialog,
  Digest,
  Empty,
  Loaded,
  PageHeader,
  StateBadge,
} from '../components/ui';
import { ago, bytes, shape, timestamp } from '../lib/format';
import { usePoll } from '../lib/poll';
import { can } from '../lib/roles';
import { href } from '../lib/router';
import { useSession } from '../lib/session';

type Version = Schemas['ModelVersionInfo'];

export function Models(props: { name?: string }) {
  if (props.name) return <ModelDetail name={props.name} />;
  return <ModelList />;
}

function ModelList() {
  const { client } = useSession();
  const models = usePoll('models', (signal) => client.get('/api/v1/models', { signal }));
  return (
    <>
      <PageHeader title="Models" subtitle="Signed model versions in the registry." />
      <Card>
        <Loaded data={models.data} error={models.error} what="models">
          {(m) =>
            m.models.length === 0 ? (
              <Empty title="No models yet.">
                Publish one with the CLI: <code>flotilla keygen --out ci</code>,{' '}
                <code>flotilla keys add ci.pub --name ci</code>, then{' '}
                <code>flotilla push model.onnx --name NAME --version 1.0.0 --key ci.key</code>{' '}
                (docs/registry.md).
              </Empty>
            ) : (
              <table class="table" data-testid="models-table">
                <thead>
                  <tr>
                    <th>Model</th>
                    <th>Description</th>
                    <th>Latest version</th>
                    <th class="num">Versions</th>
                    <th>Signatures needed</th>
                    <th>Created</th>
                  </tr>
                </thead>
                <tbody>
                  {m.models.map((model) => (
                    <tr key={model.name}>
                      <td>
                        <a href={href('models', model.name)}>
                          <strong>{model.name}</strong>
                        </a>
                      </td>
                      <td class="muted">{model.description || '—'}</td>
                      <td>
                        {model.latest_version ? (
                          <code>{model.latest_version}</code>
                        ) : (
                          <span class="muted">all yanked</span>
                        )}
                      </td>
                      <td class="num">{model.version_count}</td>
                      <td>{model.signing_threshold ?? 'server default'}</td>
                      <td title={timestamp(model.created_at)}>{ago(model.created_at)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )
          }
        </Loaded>
      </Card>
    </>
  );
}

function ModelDetail(props: { name: string }) {
  const { client, role } = useSession();
  const versions = usePoll(`model-${props.name}`, (signal) =>
    client.get('/api/v1/models/{name}/versions', { path: { name: props.name }, signal }),
  );
  const [yanking, setYanking] = useState<Version | null>(null);
  const mayYank = can(role, 'publish');

  return (
    <>
      <PageHeader
        title={props.name}
        subtitle="Every published version, newest first. Signatures cover the digest, the size and the facts shown."
        back={{ href: href('models'), label: 'Models' }}
      />
      <Loaded data={versions.data} error={versions.error} what={`the versions of ${props.name}`}>
        {(v) =>
          v.versions.length === 0 ? (
            <Card>
              <Empty title="No versions published yet.">
                <code>
                  flotilla push model.onnx --name {props.name} --version 1.0.0 --key ci.key
                </code>
              </Empty>
            </Card>
          ) : (
            <div class="stack" data-testid="versions">
              {v.versions.map((ver) => (
                <VersionCard
                  key={ver.version}
                  version={ver}
                  onYank={mayYank && !ver.yanked_at ? () => setYanking(ver) : undefined}
                />
              ))}
            </div>
          )
        }
      </Loaded>
      {yanking && (
        <ConfirmDialog
          title={`Yank ${yanking.model}@${yanking.version}?`}
          body={
            <p>
              A yanked version can no longer be deployed or rolled out, and the server stops serving
              it. Devices running it keep it until they are given another version.
            </p>
          }
          confirmLabel="Yank version"
          danger
          reasonLabel="Reason (shown to operators)"
          reasonRequired
          onConfirm={async (reason) => {
            await client.post('/api/v1/models/{name}/versions/{version}/yank', {
              path: { name: yanking.model, version: yanking.version },
              body: { reason },
            });
            versions.refresh();
          }}
          onClose={() => setYanking(null)}
        />
      )}
    </>
  );
}

function VersionCard(props: { version: Version; onYank?: () => void }) {
  const v = props.version;
  const facts = (v.signed_facts ?? {}) as Record<string, unknown>;
  const release = facts['release'];
  const hardware = facts['hardware'];
  return (
    <Card
      testid={`version-${v.version}`}
      title={
        <>
          <code class="version">{v.version}</code>{' '}
          {v.yanked_at ? <StateBadge state="yanked" /> : <Badge tone="good">published</Badge>}
        </>
      }
      aside={
        props.onYank && (
          <button type="button" class="btn btn-danger-outline btn-small" onClick={props.onYank}>
            Yank
          </button>
        )
      }
    >
      {v.yanked_at && (
        <div class="notice notice-muted">
          Yanked {ago(v.yanked_at)}
          {v.yank_reason ? `: ${v.yank_reason}` : ''}
        </div>
      )}
      <dl class="facts">
        <div>
          <dt>Size</dt>
          <dd>{bytes(v.artifact.size)}</dd>
        </div>
        <div>
          <dt>sha256</dt>
          <dd>
            <Digest hex={v.artifact.sha256} />
          </dd>
        </div>
        <div>
          <dt>Published</dt>
          <dd title={timestamp(v.created_at)}>
            {ago(v.created_at)} by {v.published_by}
          </dd>
        </div>
        <div>
          <dt>Signed by</dt>
          <dd>
            {v.signers.length === 0
              ? '—'
              : v.signers.map((s) => (
                  <span class="signer" key={s.key_id} title={`key ${s.key_id}`}>
                    {s.name} <code class="muted">{s.key_id.slice(0, 8)}</code>
                  </span>
                ))}
          </dd>
        </div>
        {release !== undefined && (
          <div>
            <dt>Release</dt>
            <dd>{String(release)}</dd>
          </div>
        )}
        {Array.isArray(hardware) && hardware.length > 0 && (
          <div>
            <dt>Hardware</dt>
            <dd>{hardware.join(', ')}</dd>
          </div>
        )}
      </dl>
      <div class="tensors">
        <TensorTable title="Inputs" tensors={v.inputs} />
        <TensorTable title="Outputs" tensors={v.outputs} />
      </div>
    </Card>
  );
}

function TensorTable(props: { title: string; tensors: Schemas['TensorInfo'][] }) {
  return (
    <div>
      <h3>{props.title}</h3>
      {props.tensors.length === 0 ? (
        <p class="muted">not declared</p>
      ) : (
        <table class="table compact">
          <thead>
            <tr>
              <th>Name</th>
              <th>Type</th>
              <th>Shape</th>
            </tr>
          </thead>
          <tbody>
            {props.tensors.map((t) => (
              <tr key={t.name}>
                <td>
                  <code>{t.name}</code>
                </td>
                <td>{t.datatype}</td>
                <td>{shape(t.shape)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
