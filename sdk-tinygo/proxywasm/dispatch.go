package proxywasm

import (
	"github.com/barbacane/sdk-tinygo/proxywasm/types"
)

// The dispatcher: it keeps the contexts the host created and routes each callback to the
// context it is for. The callbacks themselves are exported in exports_wasip1.go; this file is
// plain Go so that it is tested natively.

type pluginState struct {
	context  types.PluginContext
	callouts map[uint32]callout // token → pending HTTP callout
}

type callout struct {
	contextID uint32 // the context that dispatched it, made effective for the callback
	callback  func(numHeaders, bodySize, numTrailers int)
}

type httpState struct {
	context types.HttpContext
	rootID  uint32
}

type vmState struct {
	vm      types.VMContext
	plugins map[uint32]*pluginState
	streams map[uint32]*httpState
	// active is the context of the callback being run: a callout remembers it to make it the
	// effective context again when its response arrives.
	active uint32
}

var state = newVMState()

func newVMState() *vmState {
	return &vmState{
		plugins: map[uint32]*pluginState{},
		streams: map[uint32]*httpState{},
	}
}

// SetVMContext registers the module's VMContext. Call it from init(): the host creates the
// plugin contexts right after the module's start-up.
func SetVMContext(vm types.VMContext) {
	state.vm = vm
}

// SetPluginContext registers a VMContext that accepts the VM and creates plugin contexts with
// newPluginContext, for modules that need no VM-wide state. Call it from init().
func SetPluginContext(newPluginContext func(contextID uint32) types.PluginContext) {
	SetVMContext(&pluginFactory{newPluginContext: newPluginContext})
}

type pluginFactory struct {
	types.DefaultVMContext
	newPluginContext func(contextID uint32) types.PluginContext
}

func (f *pluginFactory) NewPluginContext(contextID uint32) types.PluginContext {
	return f.newPluginContext(contextID)
}

func (s *vmState) plugin(id uint32) *pluginState {
	p, ok := s.plugins[id]
	if !ok {
		panic("proxywasm: invalid plugin context id")
	}
	s.active = id
	return p
}

func (s *vmState) stream(id uint32) *httpState {
	h, ok := s.streams[id]
	if !ok {
		panic("proxywasm: invalid http context id")
	}
	s.active = id
	return h
}

func (s *vmState) onContextCreate(id, parentID uint32) {
	if _, ok := s.plugins[id]; ok {
		panic("proxywasm: duplicate context id")
	}
	if _, ok := s.streams[id]; ok {
		panic("proxywasm: duplicate context id")
	}
	if parentID == 0 {
		if s.vm == nil {
			panic("proxywasm: no VMContext: call proxywasm.SetVMContext from init()")
		}
		s.plugins[id] = &pluginState{
			context:  s.vm.NewPluginContext(id),
			callouts: map[uint32]callout{},
		}
		return
	}
	root := s.plugin(parentID)
	ctx := root.context.NewHttpContext(id)
	if ctx == nil {
		panic("proxywasm: NewHttpContext returned nil")
	}
	s.streams[id] = &httpState{context: ctx, rootID: parentID}
}

func (s *vmState) onVMStart(rootID uint32, size int) bool {
	s.active = rootID
	if s.vm == nil {
		panic("proxywasm: no VMContext: call proxywasm.SetVMContext from init()")
	}
	return bool(s.vm.OnVMStart(size))
}

func (s *vmState) onConfigure(rootID uint32, size int) bool {
	return bool(s.plugin(rootID).context.OnPluginStart(size))
}

func (s *vmState) onTick(rootID uint32) {
	s.plugin(rootID).context.OnTick()
}

func (s *vmState) onQueueReady(rootID, queueID uint32) {
	s.plugin(rootID).context.OnQueueReady(queueID)
}

func (s *vmState) onRequestHeaders(id uint32, n int, eos bool) types.Action {
	return s.stream(id).context.OnHttpRequestHeaders(n, eos)
}

func (s *vmState) onRequestBody(id uint32, size int, eos bool) types.Action {
	return s.stream(id).context.OnHttpRequestBody(size, eos)
}

func (s *vmState) onRequestTrailers(id uint32, n int) types.Action {
	return s.stream(id).context.OnHttpRequestTrailers(n)
}

func (s *vmState) onResponseHeaders(id uint32, n int, eos bool) types.Action {
	return s.stream(id).context.OnHttpResponseHeaders(n, eos)
}

func (s *vmState) onResponseBody(id uint32, size int, eos bool) types.Action {
	return s.stream(id).context.OnHttpResponseBody(size, eos)
}

func (s *vmState) onResponseTrailers(id uint32, n int) types.Action {
	return s.stream(id).context.OnHttpResponseTrailers(n)
}

// onHttpCallResponse delivers a callout's response to the callback given to
// DispatchHttpCall, with the dispatching context made effective again. numHeaders == 0 means
// the callout failed (GetStatus says why). A token the plugin does not know is ignored.
func (s *vmState) onHttpCallResponse(rootID, token uint32, numHeaders, bodySize, numTrailers int) {
	root := s.plugin(rootID)
	call, ok := root.callouts[token]
	if !ok {
		return
	}
	delete(root.callouts, token)
	if call.contextID != rootID {
		if _, alive := s.streams[call.contextID]; !alive {
			return // the stream ended while the callout was pending
		}
	}
	if err := SetEffectiveContext(call.contextID); err != nil && !isStub(err) {
		LogErrorf("proxywasm: cannot select context %d for callout %d: %v", call.contextID, token, err)
		return
	}
	s.active = call.contextID
	call.callback(numHeaders, bodySize, numTrailers)
}

func (s *vmState) onDone(id uint32) bool {
	if p, ok := s.plugins[id]; ok {
		s.active = id
		return p.context.OnPluginDone()
	}
	s.stream(id)
	return true
}

func (s *vmState) onLog(id uint32) {
	if h, ok := s.streams[id]; ok {
		s.active = id
		h.context.OnHttpStreamDone()
	}
}

func (s *vmState) onDelete(id uint32) {
	if _, ok := s.streams[id]; ok {
		delete(s.streams, id)
		return
	}
	if _, ok := s.plugins[id]; ok {
		delete(s.plugins, id)
		return
	}
	panic("proxywasm: invalid context id on delete")
}

// registerCallout records a callout dispatched from the active context.
func (s *vmState) registerCallout(token uint32, callback func(int, int, int)) {
	rootID := s.active
	if h, ok := s.streams[s.active]; ok {
		rootID = h.rootID
	}
	if p, ok := s.plugins[rootID]; ok {
		p.callouts[token] = callout{contextID: s.active, callback: callback}
	}
}
