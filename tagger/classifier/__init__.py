"""The classifier: text cleaning, features, language detection, the encoder, the model and its files, training,
evaluation and the labelled data. It knows nothing of helpdesks, HTTP or the store."""
