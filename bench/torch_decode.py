"""Decode from Python: one token of Llama-3-8B heads (q 32 + k 8 x 128), in place and with autograd,
through every entry point (public wrappers and the bare binding). Medians of 7 x 5000 calls.
ropekit.torch uses the native ops (ropekit/_torch_ops.so) where built; ROPEKIT_TORCH_OPS=0 in the
environment measures the Python custom ops instead."""
import torch, timeit, ropekit, ropekit.torch as rt
torch.set_num_threads(2)
spec=ropekit.RopeSpec(head_dim=128, base=500000.0)
table=ropekit.RopeTable(spec, 8192)
cache=torch.from_numpy(ropekit.cos_sin_cache(spec, 8192))
q=torch.randn(1,1,32,128); k=torch.randn(1,1,8,128); pos=torch.full((1,), 4000)
q2, k2 = q.view(1, -1), k.view(1, -1)
qa=torch.randn(1,1,32,128, requires_grad=True); ka=torch.randn(1,1,8,128, requires_grad=True)
gq, gk = torch.randn_like(qa), torch.randn_like(ka)
def m(fn, n=5000):
    fn(); ts=sorted(timeit.repeat(fn, number=n, repeat=7)); return ts[3]/n*1e6
print("native ops:", rt.NATIVE_OPS)
print("ropekit.torch.rotary_embedding   %.2f us" % m(lambda: rt.rotary_embedding(pos, q2, k2, 128, cache, True)))
print("ropekit.rotary_embedding         %.2f us" % m(lambda: ropekit.rotary_embedding(pos, q2, k2, 128, cache, True)))
print("_C.rotary_embedding              %.2f us" % m(lambda: ropekit._C.rotary_embedding(pos, q2, k2, 128, cache, True)))
if rt.NATIVE_OPS:
    op = torch.ops.ropekit.rotary_embedding.default
    print("torch.ops.ropekit.rotary_embedding %.2f us" % m(lambda: op(pos, q2, k2, 128, cache, True, 0, False, 0)))
print("ropekit.apply_rope inplace       %.2f us" % m(lambda: ropekit.apply_rope(q, k, table=table, positions=4000, inplace=True)))
print("_C.apply inplace                 %.2f us" % m(lambda: ropekit._C.apply(q, k, table=table, start=4000)))
print("ropekit.torch.apply_rope         %.2f us" % m(lambda: rt.apply_rope(q, k, table=table, positions=4000)))
print("ropekit.torch.apply_rope autograd %.2f us" % m(lambda: rt.apply_rope(qa, ka, table=table, positions=4000)))
print("  forward + backward             %.2f us" % m(lambda: torch.autograd.backward(
    rt.apply_rope(qa, ka, table=table, positions=4000), (gq, gk)), 2000))
