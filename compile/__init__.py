"""Offline side: testbed, flow meter, training, Treelite compilation, evaluation."""
