#!/bin/bash
# call 2 of 3: the second third (carry carry/wheel3/part_ab)
cp carry/wheel3/part_ab /tmp/parts/ && ls /tmp/parts | wc -l
