"""The offline `studio-demo` model: synthetic corpus (`corpus`, `lexicon`), CPU pre-training (`train`), build and
save (`build`, `readme`), the `studio demo-model` command (`command`) and the measured thesis (`scorecard`)."""
