"""The reference side of the checkpoint tests; runs in `.venv-ref` (torch, transformers), never
in lmpipe's own environment.

    python reference.py make FAMILY CORPUS.txt OUT_DIR [STRINGS.json OUT.npz]
        a tiny random checkpoint of FAMILY (gpt2, llama, bert) in the Hugging Face layout,
        with its tokenizer trained on CORPUS.txt (no download); then `expect` on it
    python reference.py expect CHECKPOINT_DIR STRINGS.json OUT.npz
        the reference's token ids, and the logits and negative log-likelihood of each
        string framed as lmpipe's `score` frames it: [bos] + ids + [eos] (BERT: [CLS] and
        [SEP]; its NLL is left to `masked-nll`, which needs lmpipe's corrupted inputs)
    python reference.py masked-nll CHECKPOINT_DIR INPUTS.json OUT.json
        the masked LM's NLL of given corrupted windows

The weights are perturbed away from the initializer's (LayerNorm scales around 1, biases
not 0), so that a transposed, swapped or dropped tensor changes the logits by far more
than the tests' tolerance.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import transformers
from tokenizers import ByteLevelBPETokenizer

# Tiny shapes: the test's work is the comparison, not the model.
SIZES = dict(hidden=32, layers=2, heads=4, positions=128)


def _perturb(model, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.add_(0.2 * noise)


def _texts(corpus: str) -> list[str]:
    with open(corpus, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def make_gpt2(corpus: str, out: str) -> None:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_texts(corpus), vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>"])
    os.makedirs(out, exist_ok=True)
    bpe.save_model(out)
    tokenizer = transformers.GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>")
    tokenizer.save_pretrained(out)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=SIZES["positions"], n_embd=SIZES["hidden"],
        n_layer=SIZES["layers"], n_head=SIZES["heads"], bos_token_id=eos, eos_token_id=eos)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    _perturb(model, 1)
    model.save_pretrained(out)


def make_llama(corpus: str, out: str) -> None:
    import io

    import sentencepiece as spm

    # Llama's tokenizer settings: BPE with byte fallback, no normalization, whitespace
    # kept, a dummy prefix, digits split; <unk> <s> </s> first.
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_texts(corpus)), model_writer=proto, vocab_size=400,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, minloglevel=2)
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/tokenizer.model", "wb") as f:
        f.write(proto.getvalue())
    config = transformers.LlamaConfig(
        vocab_size=400, hidden_size=SIZES["hidden"], intermediate_size=48,
        num_hidden_layers=SIZES["layers"], num_attention_heads=SIZES["heads"],
        num_key_value_heads=2, max_position_embeddings=SIZES["positions"],
        rms_norm_eps=1e-5, rope_theta=50_000.0, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    _perturb(model, 2)
    model.save_pretrained(out)


def make_bert(corpus: str, out: str) -> None:
    from tokenizers import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(_texts(corpus), vocab_size=400, min_frequency=1,
                                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    os.makedirs(out, exist_ok=True)
    wordpiece.save_model(out)
    tokenizer = transformers.BertTokenizerFast(
        tokenizer_object=wordpiece._tokenizer, do_lower_case=True, unk_token="[UNK]",
        sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    tokenizer.save_pretrained(out)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=SIZES["hidden"],
        num_hidden_layers=SIZES["layers"], num_attention_heads=SIZES["heads"],
        intermediate_size=48, max_position_embeddings=SIZES["positions"], type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config)
    _perturb(model, 3)
    model.save_pretrained(out)


MAKERS = {"gpt2": make_gpt2, "llama": make_llama, "bert": make_bert}


def _encoder(checkpoint: str):
    """Text -> ids as the family's reference does it: SentencePiece itself for Llama (Meta's
    tokenizer; transformers' conversion drops the dummy prefix before a leading space),
    transformers' tokenizer for the others."""
    if os.path.isfile(f"{checkpoint}/tokenizer.model"):
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor(model_file=f"{checkpoint}/tokenizer.model")
        return processor.encode
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def expect(checkpoint: str, strings_file: str, out: str) -> None:
    with open(strings_file, encoding="utf-8") as f:
        strings = json.load(f)
    encode = _encoder(checkpoint)
    model = _model(checkpoint)
    ids = [encode(s) for s in strings]
    bos, eos = _bos_eos(checkpoint, model)
    arrays = {"strings": np.array(json.dumps(strings)),
              "ids_lengths": np.array([len(i) for i in ids], np.int64),
              "ids_flat": np.array([t for row in ids for t in row], np.int64)}
    nll, logits_rows = [], []
    with torch.no_grad():
        for row in ids:
            framed = torch.tensor([[bos] + row + [eos]])
            logits = model(framed).logits[0]
            losses = torch.nn.functional.cross_entropy(logits[:-1], framed[0, 1:],
                                                       reduction="sum")
            nll.append(float(losses))
            logits_rows.append(logits.numpy())
    arrays["nll"] = np.array(nll, np.float64)
    arrays["bos_eos"] = np.array([bos, eos], np.int64)
    arrays["logits_flat"] = np.concatenate(logits_rows).astype(np.float32)
    np.savez(out, **arrays)


def _model(checkpoint: str):
    with open(f"{checkpoint}/config.json", encoding="utf-8") as f:
        masked = json.load(f)["model_type"] == "bert"
    auto = transformers.AutoModelForMaskedLM if masked else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(checkpoint, dtype=torch.float32)
    model.eval()
    return model


def _bos_eos(checkpoint: str, model) -> tuple[int, int]:
    """A text's framing tokens: [CLS] and [SEP] for BERT, the config's bos and eos else."""
    if model.config.model_type == "bert":
        tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
        return tokenizer.cls_token_id, tokenizer.sep_token_id
    return model.config.bos_token_id, model.config.eos_token_id


def masked_nll(checkpoint: str, inputs_file: str, out: str) -> None:
    """The NLL of the targets at the weighted positions of corrupted windows (lmpipe's
    masked-LM `score` corrupts a text with a fixed seed; the reference scores the same
    corrupted tokens): {"nll": [per row]}."""
    with open(inputs_file, encoding="utf-8") as f:
        rows = json.load(f)
    model = _model(checkpoint)
    nll = []
    with torch.no_grad():
        for row in rows:
            length = sum(1 for s in row["segment_ids"] if s)
            logits = model(torch.tensor([row["token_ids"][:length]])).logits[0]
            losses = torch.nn.functional.cross_entropy(
                logits, torch.tensor(row["targets"][:length]), reduction="none")
            nll.append(float((losses * torch.tensor(row["weights"][:length])).sum()))
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"nll": nll}, f)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "make":
        MAKERS[arguments[0]](*arguments[1:3])
        if len(arguments) == 5:  # and `expect` on it, in the same process (one torch import)
            expect(arguments[2], *arguments[3:])
    elif command == "expect":
        expect(*arguments)
    elif command == "masked-nll":
        masked_nll(*arguments)
    else:
        raise SystemExit(f"unknown command {command!r}")
