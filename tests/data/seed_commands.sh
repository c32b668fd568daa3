# The seed report's launch commands and environment block, verbatim (sections 1.4, 2.1-2.3).
# Golden reference for tests/unit/test_commands_golden.py: each block starts with '### <label>'.

### env
# NCCL 配置
export NCCL_SOCKET_IFNAME=eth1
export NCCL_IB_HCA=mlx5
export GLOO_SOCKET_IFNAME=eth1
export NCCL_IB_GID_INDEX=3
export NCCL_IB_TIMEOUT=22
export NCCL_IB_RETRY_CNT=7
export NCCL_IB_SL=5
export NCCL_IB_TC=136
export NCCL_IB_QPS_PER_CONNECTION=8

# NVSHMEM 配置
export NVSHMEM_IB_GID_INDEX=3
export NVSHMEM_IB_TRAFFIC_CLASS=16
export NVSHMEM_IB_SL=5
export NVSHMEM_HCA_PE_MAPPING="mlx5_1:1:2,mlx5_2:1:2,mlx5_3:1:2,mlx5_4:1:2"
export NVSHMEM_ENABLE_NIC_PE_MAPPING=1

# IB 设备列表
export IB_DEVICE_LIST="mlx5_1,mlx5_2,mlx5_3,mlx5_4"

### h20-pp2 prefill (qjhs0)
python -m sglang.launch_server \
    --model-path /home/xwy/shared/DeepSeek-V3.2 \
    --disaggregation-mode prefill \
    --disaggregation-transfer-backend mooncake \
    --disaggregation-ib-device mlx5_1,mlx5_2,mlx5_3,mlx5_4 \
    --disaggregation-bootstrap-port 8998 \
    --host 172.31.0.5 \
    --port 30000 \
    --tp-size 4 \
    --pp-size 2 \
    --disable-overlap-schedule \
    --trust-remote-code \
    --page-size 64 \
    --attention-backend fa3 \
    --mem-fraction-static 0.9 \
    --chunked-prefill-size 16384 \
    --context-length 65535 \
    --enable-cache-report \
    --dist-timeout 3600

### h20-pp2 decode (qjhs2)
python -m sglang.launch_server \
    --model-path /home/xwy/shared/DeepSeek-V3.2 \
    --disaggregation-mode decode \
    --disaggregation-transfer-backend mooncake \
    --disaggregation-ib-device mlx5_1,mlx5_2,mlx5_3,mlx5_4 \
    --disaggregation-prefill-pp 2 \
    --host 172.31.0.4 \
    --port 30001 \
    --tp-size 8 \
    --trust-remote-code \
    --page-size 64 \
    --attention-backend fa3 \
    --mem-fraction-static 0.9 \
    --context-length 65535 \
    --enable-cache-report \
    --dist-timeout 3600

### h20-tp8 prefill (qjhs0)
python -m sglang.launch_server \
    --model-path /home/xwy/shared/DeepSeek-V3.2 \
    --disaggregation-mode prefill \
    --disaggregation-transfer-backend mooncake \
    --disaggregation-ib-device mlx5_1,mlx5_2,mlx5_3,mlx5_4 \
    --disaggregation-bootstrap-port 8998 \
    --host 172.31.0.5 \
    --port 30000 \
    --tp-size 8 \
    --trust-remote-code \
    --page-size 64 \
    --attention-backend fa3 \
    --mem-fraction-static 0.9 \
    --chunked-prefill-size 16384 \
    --context-length 65535 \
    --enable-cache-report \
    --dist-timeout 3600

### h20-tp8 decode (qjhs2)
python -m sglang.launch_server \
    --model-path /home/xwy/shared/DeepSeek-V3.2 \
    --disaggregation-mode decode \
    --disaggregation-transfer-backend mooncake \
    --disaggregation-ib-device mlx5_1,mlx5_2,mlx5_3,mlx5_4 \
    --host 172.31.0.4 \
    --port 30001 \
    --tp-size 8 \
    --trust-remote-code \
    --page-size 64 \
    --attention-backend fa3 \
    --mem-fraction-static 0.9 \
    --context-length 65535 \
    --enable-cache-report \
    --dist-timeout 3600

### router (both configurations)
python -m sglang_router.launch_router \
    --pd-disaggregation \
    --prefill http://172.31.0.5:30000 8998 \
    --decode http://172.31.0.4:30001 \
    --host 0.0.0.0 \
    --port 8000 \
    --worker-startup-timeout-secs 1200 \
    --worker-startup-check-interval 30
