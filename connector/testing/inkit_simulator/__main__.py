"""python -m connector.testing.inkit_simulator"""

from connector.testing.inkit_simulator.client import main

main()
