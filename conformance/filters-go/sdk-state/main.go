// Conformance filter `sdk-state`, built on barbacane's Go SDK (sdk-tinygo): ticks, shared data
// with compare-and-swap, a shared queue and metrics.
//
// Configuration: {"tick_ms": n, "queue": name, "postpone": bool}.
//
//   - OnPluginStart sets the tick period, registers the queue and defines the counter
//     `go_sdk_requests_total`, the gauge `go_sdk_inflight` and the histogram
//     `go_sdk_path_length`.
//   - OnTick increments the shared counter `go-ticks` (CAS loop).
//   - On request headers: increments `go-hits` (CAS loop), enqueues the request path, counts
//     the request in the counter and the gauge (+1) and records the path length.
//   - OnQueueReady dequeues every item and adds their number to `go-dequeued`.
//   - On response headers: the gauge goes back down (-1) and the response gets `x-hits` (this
//     request's count), `x-ticks`, `x-dequeued`, `x-requests-metric` (the counter's value),
//     `x-done` (the shared counter `go-done`, which OnHttpStreamDone increments), `x-resolved`
//     (`same` when ResolveSharedQueue("", queue) finds the registered id), `x-clock`
//     (`plausible` when GetCurrentTimeNanoseconds is after 2024), `x-foreign` (the error of
//     CallForeignFunction("no_such_function")) and `x-foreign-round-trip` ("hello" through
//     Envoy's foreign functions "compress" then "uncompress", or the error).
//   - With "postpone": true, request headers are paused and the next OnTick resumes every
//     paused request through SetEffectiveContext + ResumeHttpRequest; such responses carry
//     `x-postponed: resumed-on-tick`.
package main

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type settings struct {
	TickMs   uint32 `json:"tick_ms"`
	Queue    string `json:"queue"`
	Postpone bool   `json:"postpone"`
}

type plugin struct {
	types.DefaultPluginContext
	settings   settings
	queue      uint32
	requests   proxywasm.MetricCounter
	inflight   proxywasm.MetricGauge
	pathLength proxywasm.MetricHistogram
	paused     []*stream
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	p.settings = settings{TickMs: 100, Queue: "go-events"}
	if err := config.Load(&p.settings); err != nil {
		return types.OnPluginStartStatusFailed
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(p.settings.TickMs); err != nil {
		proxywasm.LogErrorf("tick: %v", err)
		return types.OnPluginStartStatusFailed
	}
	queue, err := proxywasm.RegisterSharedQueue(p.settings.Queue)
	if err != nil {
		proxywasm.LogErrorf("queue: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.queue = queue
	p.requests = proxywasm.DefineCounterMetric("go_sdk_requests_total")
	p.inflight = proxywasm.DefineGaugeMetric("go_sdk_inflight")
	p.pathLength = proxywasm.DefineHistogramMetric("go_sdk_path_length")
	return types.OnPluginStartStatusOK
}

// add adds delta to the shared counter key with a compare-and-swap loop and returns the new
// value.
func add(key string, delta uint64) uint64 {
	for range 100 {
		data, cas, err := proxywasm.GetSharedData(key)
		if err != nil && !errors.Is(err, types.ErrNotFound) {
			proxywasm.LogErrorf("get %s: %v", key, err)
			return 0
		}
		var value uint64
		if len(data) == 8 {
			value = binary.LittleEndian.Uint64(data)
		}
		value += delta
		next := binary.LittleEndian.AppendUint64(nil, value)
		err = proxywasm.SetSharedData(key, next, cas)
		if err == nil {
			return value
		}
		if !errors.Is(err, types.ErrCasMismatch) {
			proxywasm.LogErrorf("set %s: %v", key, err)
			return 0
		}
	}
	proxywasm.LogErrorf("set %s: too many CAS mismatches", key)
	return 0
}

func get(key string) uint64 {
	data, _, err := proxywasm.GetSharedData(key)
	if err != nil || len(data) != 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(data)
}

func (p *plugin) OnTick() {
	add("go-ticks", 1)
	for _, s := range p.paused {
		if err := proxywasm.SetEffectiveContext(s.id); err != nil {
			proxywasm.LogErrorf("effective context %d: %v", s.id, err)
			continue
		}
		s.resumed = true
		if err := proxywasm.ResumeHttpRequest(); err != nil {
			proxywasm.LogErrorf("resume %d: %v", s.id, err)
		}
	}
	p.paused = p.paused[:0]
}

func (p *plugin) OnQueueReady(queueID uint32) {
	n := uint64(0)
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if errors.Is(err, types.ErrEmpty) {
			break
		}
		if err != nil {
			proxywasm.LogErrorf("dequeue: %v", err)
			break
		}
		proxywasm.LogDebugf("dequeued %s", item)
		n++
	}
	if n > 0 {
		add("go-dequeued", n)
	}
}

func (p *plugin) NewHttpContext(contextID uint32) types.HttpContext {
	return &stream{plugin: p, id: contextID}
}

type stream struct {
	types.DefaultHttpContext
	plugin  *plugin
	id      uint32
	hits    uint64
	resumed bool
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.hits = add("go-hits", 1)
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	if err := proxywasm.EnqueueSharedQueue(s.plugin.queue, []byte(path)); err != nil {
		proxywasm.LogErrorf("enqueue: %v", err)
	}
	if err := s.plugin.requests.Increment(1); err != nil {
		proxywasm.LogErrorf("counter: %v", err)
	}
	if err := s.plugin.inflight.Add(1); err != nil {
		proxywasm.LogErrorf("gauge: %v", err)
	}
	if err := s.plugin.pathLength.Record(uint64(len(path))); err != nil {
		proxywasm.LogErrorf("histogram: %v", err)
	}
	if s.plugin.settings.Postpone {
		s.plugin.paused = append(s.plugin.paused, s)
		return types.ActionPause
	}
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	add("go-done", 1)
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	_ = s.plugin.inflight.Add(-1)
	requests, err := s.plugin.requests.Value()
	metric := strconv.FormatUint(requests, 10)
	if err != nil {
		metric = "error:" + err.Error()
	}
	_ = proxywasm.AddHttpResponseHeader("x-hits", strconv.FormatUint(s.hits, 10))
	_ = proxywasm.AddHttpResponseHeader("x-ticks", strconv.FormatUint(get("go-ticks"), 10))
	_ = proxywasm.AddHttpResponseHeader("x-dequeued", strconv.FormatUint(get("go-dequeued"), 10))
	_ = proxywasm.AddHttpResponseHeader("x-requests-metric", metric)
	_ = proxywasm.AddHttpResponseHeader("x-done", strconv.FormatUint(get("go-done"), 10))
	resolved := "same"
	if id, err := proxywasm.ResolveSharedQueue("", s.plugin.settings.Queue); err != nil {
		resolved = err.Error()
	} else if id != s.plugin.queue {
		resolved = "other:" + strconv.FormatUint(uint64(id), 10)
	}
	_ = proxywasm.AddHttpResponseHeader("x-resolved", resolved)
	clock := "implausible"
	if now, err := proxywasm.GetCurrentTimeNanoseconds(); err != nil {
		clock = err.Error()
	} else if now > 1704067200*1e9 { // 2024-01-01
		clock = "plausible"
	}
	_ = proxywasm.AddHttpResponseHeader("x-clock", clock)
	foreign := "ok"
	if _, err := proxywasm.CallForeignFunction("no_such_function", nil); err != nil {
		foreign = err.Error()
	}
	_ = proxywasm.AddHttpResponseHeader("x-foreign", foreign)
	var roundTrip string
	if compressed, err := proxywasm.CallForeignFunction("compress", []byte("hello")); err != nil {
		roundTrip = "compress: " + err.Error()
	} else if plain, err := proxywasm.CallForeignFunction("uncompress", compressed); err != nil {
		roundTrip = "uncompress: " + err.Error()
	} else {
		roundTrip = string(plain)
	}
	_ = proxywasm.AddHttpResponseHeader("x-foreign-round-trip", roundTrip)
	if s.resumed {
		_ = proxywasm.AddHttpResponseHeader("x-postponed", "resumed-on-tick")
	}
	return types.ActionContinue
}
