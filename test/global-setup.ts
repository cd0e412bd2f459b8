// Suite-wide setup. Long-lived test infrastructure (the Kafka broker) registers here so that it
// starts once per `vitest run` and is stopped at the end.
export async function setup(): Promise<void> {}
export async function teardown(): Promise<void> {}
