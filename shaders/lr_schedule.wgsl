// Learning-rate schedules evaluated on the GPU once per step, after the step counter t is
// incremented and before the optimizer updates read the rate (PyTorch's schedulers, stepped
// per optimizer step). The result is a factor of the optimizer's base rate (base = 1 here, so
// one-cycle's max rate is the optimizer's). With s = t − 1, the index of the step about to run:
//   0 constant:   lr = base
//   1 step:       lr = base · gamma^⌊s / step_size⌋                     (a = step_size, b = gamma)
//   2 multi-step: lr = base · gamma^(milestones ≤ s)                    (b = gamma, m0..m3, count)
//   3 cosine with linear warm-up over w steps of T:                     (a = w, c = T, d = min factor)
//                 s < w: lr = base · (s + 1) / w
//                 else:  lr = base · (d + (1 − d) · (1 + cos(π · (s − w) / (T − w))) / 2)
//   4 one-cycle (cosine annealing, as torch.optim.lr_scheduler.OneCycleLR), max = base:
//                 (a = pct_start · T steps up, c = T, b = div_factor, d = final_div_factor)
//                 up:   from base/b to base;  down: from base to base/(b·d)
// Bindings: 0 = params, 1 = t (u32 [1]), 2 = lr factor (f32 [1], written).

struct Params { kind: u32, count: u32, base: f32, a: f32, b: f32, c: f32, d: f32, _pad: u32, m: vec4<u32> }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> sched_t: array<u32>;
@group(0) @binding(2) var<storage, read_write> sched_lr: array<f32>;

const PI: f32 = 3.14159265358979;

// Cosine interpolation from `start` to `end` as `frac` goes from 0 to 1.
fn anneal(start: f32, end: f32, frac: f32) -> f32 {
    return end + (start - end) * (1.0 + cos(PI * clamp(frac, 0.0, 1.0))) / 2.0;
}

@compute @workgroup_size(1)
fn lr_schedule() {
    let s = f32(sched_t[0]) - 1.0;
    var lr = p.base;
    switch p.kind {
        case 1u: { lr = p.base * pow(p.b, floor(s / p.a)); }
        case 2u: {
            var passed = 0.0;
            for (var k = 0u; k < p.count; k++) {
                if (s >= f32(p.m[k])) { passed += 1.0; }
            }
            lr = p.base * pow(p.b, passed);
        }
        case 3u: {
            if (s < p.a) {
                lr = p.base * (s + 1.0) / p.a;
            } else {
                lr = p.base * anneal(1.0, p.d, (s - p.a) / max(p.c - p.a, 1.0));
            }
        }
        case 4u: {
            let initial = p.base / p.b;
            if (s <= p.a) {
                lr = anneal(initial, p.base, s / max(p.a, 1.0));
            } else {
                lr = anneal(p.base, initial / p.d, (s - p.a) / max(p.c - 1.0 - p.a, 1.0));
            }
        }
        default: {}
    }
    sched_lr[0] = lr;
}
