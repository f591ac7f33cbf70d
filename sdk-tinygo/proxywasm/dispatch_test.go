package proxywasm

import (
	"reflect"
	"testing"

	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

type recorder struct {
	events *[]string
}

func (r recorder) add(e string) { *r.events = append(*r.events, e) }

type testVM struct {
	types.DefaultVMContext
	recorder
}

func (v *testVM) NewPluginContext(id uint32) types.PluginContext {
	v.add("plugin")
	return &testPlugin{recorder: v.recorder}
}

type testPlugin struct {
	types.DefaultPluginContext
	recorder
}

func (p *testPlugin) OnPluginStart(size int) types.OnPluginStartStatus {
	p.add("start")
	return size > 0
}
func (p *testPlugin) OnTick()                { p.add("tick") }
func (p *testPlugin) OnQueueReady(id uint32) { p.add("queue") }
func (p *testPlugin) NewHttpContext(uint32) types.HttpContext {
	return &testStream{recorder: p.recorder}
}

type testStream struct {
	types.DefaultHttpContext
	recorder
}

func (s *testStream) OnHttpRequestHeaders(n int, eos bool) types.Action {
	s.add("request-headers")
	return types.ActionPause
}
func (s *testStream) OnHttpStreamDone() { s.add("done") }

func withState(t *testing.T) (*vmState, *[]string) {
	t.Helper()
	saved := state
	t.Cleanup(func() { state = saved })
	state = newVMState()
	events := &[]string{}
	SetVMContext(&testVM{recorder: recorder{events}})
	return state, events
}

func TestCallbacksReachTheirContexts(t *testing.T) {
	s, events := withState(t)
	s.onContextCreate(1, 0)
	if !s.onVMStart(1, 0) {
		t.Fatal("default OnVMStart refused")
	}
	if s.onConfigure(1, 0) || !s.onConfigure(1, 5) {
		t.Fatal("OnPluginStart's status is not returned")
	}
	s.onContextCreate(2, 1)
	if got := s.onRequestHeaders(2, 3, true); got != types.ActionPause {
		t.Fatalf("action %v", got)
	}
	if got := s.onResponseHeaders(2, 3, true); got != types.ActionContinue {
		t.Fatalf("action %v", got)
	}
	s.onTick(1)
	s.onQueueReady(1, 7)
	if !s.onDone(2) {
		t.Fatal("on_done of a stream")
	}
	s.onLog(2)
	s.onDelete(2)
	if !s.onDone(1) {
		t.Fatal("on_done of a plugin")
	}
	s.onDelete(1)
	want := []string{"plugin", "start", "start", "request-headers", "tick", "queue", "done"}
	if !reflect.DeepEqual(*events, want) {
		t.Fatalf("events %v", *events)
	}
	if len(s.plugins) != 0 || len(s.streams) != 0 {
		t.Fatal("contexts left after delete")
	}
}

func TestCalloutsGoBackToTheDispatchingStream(t *testing.T) {
	s, _ := withState(t)
	s.onContextCreate(1, 0)
	s.onContextCreate(2, 1)
	s.onContextCreate(3, 1)
	var got []uint32
	s.onRequestHeaders(2, 0, true) // makes 2 the active context
	s.registerCallout(10, func(h, b, tr int) { got = append(got, s.active, uint32(h+b+tr)) })
	s.onRequestHeaders(3, 0, true)
	s.registerCallout(11, func(int, int, int) { got = append(got, s.active) })
	s.onTick(1)
	s.registerCallout(12, func(int, int, int) { got = append(got, s.active) })

	s.onHttpCallResponse(1, 10, 1, 2, 3)
	s.onHttpCallResponse(1, 10, 1, 2, 3) // delivered once
	s.onHttpCallResponse(1, 99, 1, 0, 0) // unknown token: ignored
	s.onDelete(3)
	s.onHttpCallResponse(1, 11, 1, 0, 0) // its stream is gone: ignored
	s.onHttpCallResponse(1, 12, 0, 0, 0) // dispatched from the plugin itself
	if want := []uint32{2, 6, 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestInvalidContextsPanicLikeTheOtherSDKs(t *testing.T) {
	s, _ := withState(t)
	for name, f := range map[string]func(){
		"stream under an unknown plugin": func() { s.onContextCreate(2, 9) },
		"unknown stream":                 func() { s.onRequestHeaders(5, 0, false) },
		"unknown plugin":                 func() { s.onTick(5) },
		"duplicate id":                   func() { s.onContextCreate(1, 0); s.onContextCreate(1, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestWithoutAHostTheStubsAnswerUnimplemented(t *testing.T) {
	if _, err := GetHttpRequestHeaders(); err != types.ErrUnimplemented {
		t.Fatalf("%v", err)
	}
	if err := SetProperty([]string{"a"}, nil); err.Error() != "proxy-wasm status 12 (unimplemented)" {
		t.Fatalf("%v", err)
	}
}
