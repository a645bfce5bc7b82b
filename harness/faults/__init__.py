"""The nemesis role: the fault schedule's executor and the TCP proxy that carries network faults."""
