// Every geolayers op schema, declared once. Kernels register per backend in cpu/ and cuda/;
// autograd and fake (meta) kernels are registered from Python in geolayers/ops/.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// The module exists only so that `import geolayers._C` loads this library and runs the
// static registrations below; it exposes no Python functions (ops live in torch.ops.geolayers).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "geolayers compiled ops (see torch.ops.geolayers)", -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(geolayers, m) {
  // src: (N, F), ptr: (S + 1,) int64 CSR offsets. Returns out: (S, F) and, for "max"/"min",
  // arg: (S, F) int64 row index of the selected element (-1 for empty segments), else arg: (0,).
  m.def("segment_reduce_csr(Tensor src, Tensor ptr, str reduce) -> (Tensor, Tensor)");
  // Gradient with respect to src, (num_rows, F), of segment_reduce_csr.
  m.def(
      "segment_reduce_csr_backward(Tensor grad_out, Tensor ptr, Tensor arg, SymInt num_rows, "
      "str reduce) -> Tensor");
  // Poincare-ball distances (curvature -c, c a 1-element tensor of the dtype of x). x: (N, D),
  // y: (M, D) -> (N, M) all pairs; the backward returns (grad_x (N, D), grad_y (M, D)).
  m.def("poincare_pairwise_dist(Tensor x, Tensor y, Tensor c) -> Tensor");
  m.def("poincare_pairwise_dist_backward(Tensor grad, Tensor x, Tensor y, Tensor c) -> (Tensor, Tensor)");
  // x: (B, D), y: (M, D), index: (B, K) int64 rows of y -> (B, K) distances d(x_b, y_index[b, k]).
  m.def("poincare_gather_dist(Tensor x, Tensor y, Tensor index, Tensor c) -> Tensor");
  m.def(
      "poincare_gather_dist_backward(Tensor grad, Tensor x, Tensor y, Tensor index, Tensor c) -> "
      "(Tensor, Tensor)");
  // Poincare embedding training (Nickel and Kiela 2017), updating weight (N, D) in place. One
  // batch: u, v (B,) int64 positive pairs, negatives (B, K) int64 (-1: no negative); returns the
  // mean loss (float64, 0-dim).
  m.def(
      "poincare_embedding_step(Tensor(a!) weight, Tensor u, Tensor v, Tensor negatives, float lr, float c) -> "
      "Tensor");
  // The negatives the epoch kernel draws for pairs (P, 2), as a (P, K) tensor: uniform, or from
  // the cumulative weights neg_cdf (N,) float64 when it is not empty, never u or a node listed in
  // u's row of the sorted CSR adjacency (adj_ptr (N + 1,), adj_idx (E,)).
  m.def(
      "poincare_embedding_negatives(Tensor pairs, Tensor adj_ptr, Tensor adj_idx, Tensor neg_cdf, int num_nodes, "
      "int negatives, int seed, int epoch) -> Tensor");
  // One epoch over pairs (P, 2) in the given order, in batches of batch_size, negatives sampled as
  // above; returns the sum of the item losses (float64, 0-dim).
  m.def(
      "poincare_embedding_epoch(Tensor(a!) weight, Tensor pairs, Tensor adj_ptr, Tensor adj_idx, Tensor neg_cdf, "
      "int negatives, int batch_size, float lr, float c, int seed, int epoch) -> Tensor");
  // Random walks on a CSR graph (rowptr (N + 1,), col (E,) int64 sorted within rows, optional
  // weight (E,) >= 0) from start (S,) int64: (S, walk_length + 1) int64 node ids, -1 after a dead
  // end. p = q = 1: first-order (uniform or weighted); otherwise node2vec's second-order bias.
  // Walk s draws its numbers from Philox keyed by seed and its global index offset + s.
  m.def(
      "random_walk(Tensor rowptr, Tensor col, Tensor? weight, Tensor start, int walk_length, float p, float q, "
      "int seed, int offset) -> Tensor");
  // Skip-gram with negative sampling over walks (W, L) int64 (-1 ends a walk), in place on
  // input (V_in, D) and output (V_out, D): contexts are the tokens themselves, or the features
  // context_idx[context_ptr[t]:context_ptr[t + 1]] of token t (MUSAE/AE) when context_ptr is not
  // empty; negatives from the alias table (alias_prob, alias_idx) over V_out; keep_prob (V_in,)
  // float64 subsampling or empty. Returns (loss sum or 0, number of positive pairs), float64 (2,).
  m.def(
      "sgns_train(Tensor(a!) input, Tensor(b!) output, Tensor walks, Tensor context_ptr, Tensor context_idx, "
      "Tensor alias_prob, Tensor alias_idx, Tensor keep_prob, int window, bool shrink_window, bool exact_distance, "
      "int negatives, float lr_start, float lr_end, int seed, int offset, bool compute_loss) -> Tensor");
}
