// Response shapes of the system endpoints; they drive validation, types and the OpenAPI document.
import { Type } from '@sinclair/typebox';

const serviceHealth = {
  status: Type.Union([Type.Literal('up'), Type.Literal('down')]),
  latency_ms: Type.Number(),
  kind: Type.String({ description: 'postgresql or pglite; redis or memory; vllm' }),
};

export const healthReportSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('unhealthy')]),
    timestamp: Type.String({ format: 'date-time' }),
    version: Type.String(),
    services: Type.Object({
      postgres: Type.Object(serviceHealth),
      redis: Type.Object(serviceHealth),
      vllm: Type.Object({
        ...serviceHealth,
        healthy_upstreams: Type.Integer(),
        total_upstreams: Type.Integer(),
        upstreams: Type.Array(
          Type.Object({ name: Type.String(), status: Type.Union([Type.Literal('up'), Type.Literal('down')]), breaker: Type.String(), in_flight: Type.Integer(), latency_ms: Type.Number() }),
        ),
      }),
    }),
  },
  { $id: 'HealthReport' },
);

export const probeSchema = Type.Object({
  status: Type.String(),
  reason: Type.Optional(Type.String()),
});
