import numpy as np
from sklearn.model_selection import cross_val_score
from rnnext.sklearn import RNNClassifier

rng = np.random.default_rng(0)
X = rng.standard_normal((120, 12, 2)).astype(np.float32)   # (n_samples, n_steps, n_features)
y = np.where(X[:, :, 1].sum(axis=1) > 0, "up", "down")     # any labels scikit-learn accepts

clf = RNNClassifier("gru", hidden_size=16, epochs=10, lr=1e-2, seed=0)
print(cross_val_score(clf, X, y, cv=3))                    # accuracy per fold
clf.fit(X, y)
print(clf.classes_, clf.predict(X[:3]), clf.model_)        # model_: the trained rx.GRU
