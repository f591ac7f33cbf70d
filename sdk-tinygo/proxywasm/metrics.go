package proxywasm

import (
	"github.com/barbacane/sdk-tinygo/proxywasm/internal/abi"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

// barbacane exports plugin metrics on /__barbacane/metrics as
// `barbacane_plugin_<name>{plugin="<plugin>"}`.

// DefineMetric defines a metric (or finds the existing one of that name) and returns its id.
func DefineMetric(metricType types.MetricType, name string) (uint32, error) {
	var id uint32
	err := status(abi.ProxyDefineMetric(uint32(metricType), stringPtr(name), int32(len(name)), &id))
	return id, err
}

// IncrementMetric adds offset to a counter (offset > 0) or a gauge.
func IncrementMetric(metricID uint32, offset int64) error {
	return status(abi.ProxyIncrementMetric(metricID, offset))
}

// RecordMetric sets a gauge, adds to a counter or records a histogram sample.
func RecordMetric(metricID uint32, value uint64) error {
	return status(abi.ProxyRecordMetric(metricID, value))
}

// GetMetric returns the value of a counter or a gauge.
func GetMetric(metricID uint32) (uint64, error) {
	var value uint64
	err := status(abi.ProxyGetMetric(metricID, &value))
	return value, err
}

// MetricCounter is a monotonic counter.
type MetricCounter uint32

// DefineCounterMetric defines a counter. A failure is logged at error level and gives a
// counter whose operations fail with types.ErrNotFound.
func DefineCounterMetric(name string) MetricCounter {
	id, err := DefineMetric(types.MetricTypeCounter, name)
	if err != nil && !isStub(err) {
		LogErrorf("proxywasm: cannot define counter %q: %v", name, err)
	}
	return MetricCounter(id)
}

// ID returns the metric id.
func (c MetricCounter) ID() uint32 { return uint32(c) }

// Increment adds offset (> 0) to the counter.
func (c MetricCounter) Increment(offset uint64) error {
	return IncrementMetric(uint32(c), int64(offset))
}

// Value returns the counter's value.
func (c MetricCounter) Value() (uint64, error) { return GetMetric(uint32(c)) }

// MetricGauge is a value that goes up and down.
type MetricGauge uint32

// DefineGaugeMetric defines a gauge; failures as in DefineCounterMetric.
func DefineGaugeMetric(name string) MetricGauge {
	id, err := DefineMetric(types.MetricTypeGauge, name)
	if err != nil && !isStub(err) {
		LogErrorf("proxywasm: cannot define gauge %q: %v", name, err)
	}
	return MetricGauge(id)
}

// ID returns the metric id.
func (g MetricGauge) ID() uint32 { return uint32(g) }

// Add adds offset (negative subtracts) to the gauge.
func (g MetricGauge) Add(offset int64) error { return IncrementMetric(uint32(g), offset) }

// Set sets the gauge.
func (g MetricGauge) Set(value uint64) error { return RecordMetric(uint32(g), value) }

// Value returns the gauge's value.
func (g MetricGauge) Value() (uint64, error) { return GetMetric(uint32(g)) }

// MetricHistogram records a distribution of samples.
type MetricHistogram uint32

// DefineHistogramMetric defines a histogram; failures as in DefineCounterMetric.
func DefineHistogramMetric(name string) MetricHistogram {
	id, err := DefineMetric(types.MetricTypeHistogram, name)
	if err != nil && !isStub(err) {
		LogErrorf("proxywasm: cannot define histogram %q: %v", name, err)
	}
	return MetricHistogram(id)
}

// ID returns the metric id.
func (h MetricHistogram) ID() uint32 { return uint32(h) }

// Record records a sample.
func (h MetricHistogram) Record(value uint64) error { return RecordMetric(uint32(h), value) }
