// Rollouts: staged, health-gated moves of a model version across devices. The server's
// rollouts API is not in this build's OpenAPI document yet; this page says so.

import { Card, Empty, PageHeader } from '../components/ui';

export function Rollouts(_props: { id?: string }) {
  return (
    <>
      <PageHeader title="Rollouts" subtitle="Staged, health-gated moves to a new model version." />
      <Card>
        <ActiveRollouts />
      </Card>
    </>
  );
}

export function ActiveRollouts() {
  return (
    <Empty title="This server does not run rollouts yet.">
      Deploy versions with <code>flotilla deploy MODEL@VERSION --selector …</code> meanwhile.
    </Empty>
  );
}
