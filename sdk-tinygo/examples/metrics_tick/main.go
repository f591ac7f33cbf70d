// Example metrics_tick: counts requests in a metric and, every tick, reports in the log how
// many paths were enqueued on a shared queue since the last tick.
//
// Configuration: {"tick_ms": 1000}. The counter appears on barbacane's /__barbacane/metrics
// as `barbacane_plugin_example_requests_total{plugin="..."}`.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o metrics_tick.wasm .
package main

import (
	"errors"

	"github.com/barbacane/sdk-tinygo/config"
	"github.com/barbacane/sdk-tinygo/proxywasm"
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &pluginContext{} })
}

type pluginContext struct {
	types.DefaultPluginContext
	TickMs   uint32 `json:"tick_ms"`
	requests proxywasm.MetricCounter
	queue    uint32
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	p.TickMs = 1000
	if err := config.Load(p); err != nil {
		return types.OnPluginStartStatusFailed
	}
	p.requests = proxywasm.DefineCounterMetric("example_requests_total")
	queue, err := proxywasm.RegisterSharedQueue("paths")
	if err != nil {
		proxywasm.LogErrorf("registering the queue: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.queue = queue
	if err := proxywasm.SetTickPeriodMilliSeconds(p.TickMs); err != nil {
		proxywasm.LogErrorf("setting the tick: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *pluginContext) OnTick() {
	seen := 0
	for {
		_, err := proxywasm.DequeueSharedQueue(p.queue)
		if errors.Is(err, types.ErrEmpty) {
			break
		}
		if err != nil {
			proxywasm.LogErrorf("dequeuing: %v", err)
			break
		}
		seen++
	}
	total, _ := p.requests.Value()
	proxywasm.LogInfof("%d requests since the last tick, %d in all", seen, total)
}

func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	_ = h.plugin.requests.Increment(1)
	if path, err := proxywasm.GetHttpRequestHeader(":path"); err == nil {
		_ = proxywasm.EnqueueSharedQueue(h.plugin.queue, []byte(path))
	}
	return types.ActionContinue
}
