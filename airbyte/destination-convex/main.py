# Airbyte's connector layout: `python main.py <command>` runs the destination.
from destination_convex.run import run

if __name__ == "__main__":
    run()
