"""A Flower App with fedcodec on both links (FedAvg on scikit-learn's digits)."""
