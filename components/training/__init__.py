"""The trainer behind `components/train.py`: input pipeline, strategy, optimizer, loop.

TensorFlow lives here (tf.data, tf.distribute); the model code in `models/` stays
backend-agnostic Keras.
"""
