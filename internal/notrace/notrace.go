// Package notrace turns off the OpenTelemetry tracing that Tessera does
// internally. Cairn exports no traces, but Tessera starts a span for every
// appended record (Appender.Add, the in-memory dedup, Await) on the global
// tracer provider; until a provider is set, OpenTelemetry's global one
// builds a delegating non-recording span per call, an allocation on the
// append path. The no-op provider hands back a shared span instead.
//
// Only binaries call Install (cmd/cairn, and the log tests' child
// process, which stands in for it): it sets a process-wide global, which a
// library must never do. Tessera's metrics are untouched: they go to the
// global meter provider, which Cairn leaves unset (its own metrics are
// Prometheus collectors, not OpenTelemetry instruments).
package notrace

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
)

// Install sets the process's global tracer provider to the no-op one.
func Install() { otel.SetTracerProvider(noop.NewTracerProvider()) }
